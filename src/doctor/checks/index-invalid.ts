import { qualify } from '../../db/ident.js';
import type { CatalogCheck, DoctorEnv } from '../types.js';
import { TABLE, UNIQUE_INDEX, createUniqueIndexSql, remedyText, tsmCommand } from '../util.js';

/** `CREATE [UNIQUE] INDEX name ON …` → the same with CONCURRENTLY. */
function concurrently(definition: string): string {
  return definition.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX CONCURRENTLY ') + ';';
}

/** One row per index on the table. */
export interface IndexStateRow {
  index: string;
  is_valid: boolean;
  is_ready: boolean;
  is_live: boolean;
  /** pg_stat_progress_create_index shows a build of it running. */
  build_in_progress: boolean;
  definition: string;
}

export const indexInvalid: CatalogCheck<IndexStateRow> = {
  id: 'index.invalid',
  title: 'No invalid indexes',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  looksAt:
    'indisvalid and indisready of every index on telegram_sessions. An index that is not valid while ' +
    'pg_stat_progress_create_index shows its build running is a build in progress, not a failure, and is ' +
    "skipped (a role without pg_read_all_stats cannot see other roles' builds).",
  why:
    'A failed CREATE INDEX CONCURRENTLY (duplicates, a lock timeout, a cancel) leaves an INVALID index: ' +
    'queries and ON CONFLICT ignore it, yet writes may still maintain (and, if unique, enforce) it, and ' +
    'CREATE INDEX IF NOT EXISTS silently skips it, so it is never rebuilt.',
  sql: `SELECT ic.relname::text                           AS index,
       i.indisvalid AS is_valid, i.indisready AS is_ready, i.indislive AS is_live,
       EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p
                WHERE p.index_relid = i.indexrelid)   AS build_in_progress,
       pg_catalog.pg_get_indexdef(i.indexrelid)       AS definition
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c     ON c.oid = i.indrelid
  JOIN pg_catalog.pg_class ic    ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1::text AND c.relname = '${TABLE}'
 ORDER BY ic.relname`,
  evaluate(rows, env) {
    const notValid = rows.filter((r) => !(r.is_valid && r.is_ready));
    const building = notValid.filter((r) => r.build_in_progress);
    const invalid = notValid.filter((r) => !r.build_in_progress);
    const note = building.length > 0 ? `; build in progress (not counted): ${building.map((r) => r.index).join(', ')}` : '';
    if (invalid.length === 0) {
      return { status: 'ok', detail: `${rows.length - building.length} of ${rows.length} indexes valid${note}` };
    }
    return {
      status: 'fail',
      detail: `INVALID (left by a failed concurrent build): ${invalid.map((r) => r.index).join(', ')}${note}`,
      remedy: remedyFor(invalid, env),
    };
  },
  remedy: (env) => remedyFor([{ index: UNIQUE_INDEX }], env),
};

function remedyFor(invalid: (Pick<IndexStateRow, 'index'> & Partial<IndexStateRow>)[], env: DoctorEnv): string {
  const commands: string[] = [];
  const sql: string[] = [];
  for (const r of invalid) {
    sql.push(`DROP INDEX CONCURRENTLY IF EXISTS ${qualify(env.schema, r.index)};`);
    sql.push(typeof r.definition === 'string' ? concurrently(r.definition) : createUniqueIndexSql(env));
  }
  if (invalid.some((r) => r.index === UNIQUE_INDEX)) {
    commands.push(`${tsmCommand(env, 'migrate up')}   (drops the invalid ${UNIQUE_INDEX} and rebuilds it)`);
    commands.push(`if data.duplicates fails, run ${tsmCommand(env, 'dedupe')} first, or the rebuild fails again`);
  }
  return remedyText(commands, sql);
}
