import { tsmCommand } from '../../report/shell.js';
import { UNIQUE_SPEC, buildSteps, keyProblemOptions, partitionTree, userIdKeyProblem } from '../partitions.js';
import { predicateText } from '../sql.js';
import type { CatalogCheck, DoctorEnv, Facts } from '../types.js';
import { INDEX_MIGRATION, TABLE, UNIQUE_INDEX, normalizePredicate, remedyText } from '../util.js';

/** One row per index on the table itself (on a partitioned table: its partitioned indexes). */
export interface IndexRow {
  index: string;
  is_unique: boolean;
  is_valid: boolean;
  is_ready: boolean;
  is_immediate: boolean;
  /** A partitioned index (relkind I): valid only once every partition has an attached index. */
  is_partitioned: boolean;
  /** Key columns in order ('(expression)' for an expression key). */
  keys: string[];
  /** The partial index's WHERE, or null. */
  predicate: string | null;
}

/** The predicate PostgreSQL can prove from `ON CONFLICT (user_id) WHERE user_id IS NOT NULL`. */
function predicateFits(predicate: string | null): boolean {
  return predicate == null || normalizePredicate(predicate) === 'user_idisnotnull';
}

/** Why an index on user_id cannot be the arbiter of ON CONFLICT (user_id); null when it can. */
export function whyNotArbiter(r: IndexRow): string | null {
  const keys = r.keys ?? [];
  if (!keys.includes('user_id')) return null; // not about user_id at all
  if (!r.is_unique) return 'not unique';
  if (keys.length !== 1) return `unique on (${keys.join(', ')}), not (user_id) alone`;
  if (r.is_partitioned && !r.is_valid) return 'a partitioned index that is not valid yet: some partitions have no attached index (see index.invalid)';
  if (!r.is_valid || !r.is_ready) return 'INVALID (see index.invalid)';
  if (!r.is_immediate) return 'DEFERRABLE, which ON CONFLICT cannot use';
  if (!predicateFits(r.predicate)) return `partial WHERE ${r.predicate}, not implied by user_id IS NOT NULL`;
  return null;
}

export function isArbiter(r: IndexRow): boolean {
  const keys = r.keys ?? [];
  return keys.length === 1 && keys[0] === 'user_id' && whyNotArbiter(r) === null;
}

/**
 * Whether `tsm migrate up` would build the unique index: its migration is not recorded as applied
 * (no tsm_migrations table at all counts: `up` then applies every migration). null: unknown.
 */
export function upBuildsIndex(facts: Facts): boolean | null {
  const m = facts.migrations;
  if (m === null) return null;
  if (!m.table) return true;
  return m.migrations.find((x) => x.name === INDEX_MIGRATION)?.state === 'pending';
}

/** What to say about `tsm migrate up` for the unique index, given the history. */
export function upLine(env: DoctorEnv, facts: Facts, what: string): string[] {
  const up = tsmCommand(env.schema, 'migrate up');
  const builds = upBuildsIndex(facts);
  if (builds === true) return [`${up}   (${what})`];
  if (builds === false) {
    return [`${up} does not rebuild it: ${INDEX_MIGRATION} is recorded as applied in tsm_migrations; run the SQL below`];
  }
  return [`${up}   (${what}, while ${INDEX_MIGRATION} is pending: see the migrations check)`];
}

/** The remedy for a missing unique index on user_id (index.user-id-unique and index.on-conflict). */
export function uniqueIndexRemedy(env: DoctorEnv, facts?: Facts): string {
  const dedupe = `if data.duplicates fails, run ${tsmCommand(env.schema, 'dedupe')} first`;
  if (facts && facts.tableExists) {
    const problem = userIdKeyProblem(facts, env.schema);
    if (problem !== null) {
      const o = keyProblemOptions(env.schema, tsmCommand(env.schema, 'migrate up'));
      return remedyText(o.commands, o.sql, o.lead);
    }
    if (facts.partitioning) {
      const steps = buildSteps(partitionTree(facts, env.schema), UNIQUE_INDEX, UNIQUE_SPEC, true);
      return remedyText(
        [...upLine(env, facts, 'builds it ON ONLY the parent, CONCURRENTLY on each partition, then attaches them; writers are not blocked'), dedupe],
        steps,
        'or by hand, one statement at a time (CREATE INDEX CONCURRENTLY is refused on a partitioned table):',
      );
    }
    return remedyText([...upLine(env, facts, 'builds the unique index CONCURRENTLY; writers are not blocked'), dedupe], [createUniqueIndexSql(env)]);
  }
  return remedyText(
    [`${tsmCommand(env.schema, 'migrate up')}   (builds the unique index CONCURRENTLY; writers are not blocked)`, dedupe],
    [createUniqueIndexSql(env)],
  );
}

/** The SQL that builds the unique index on a plain table the way tsm's migration does. */
export function createUniqueIndexSql(env: DoctorEnv): string {
  return buildSteps({ schema: env.schema, name: TABLE, key: null, keyColumns: null, children: [] }, UNIQUE_INDEX, '(user_id) WHERE user_id IS NOT NULL', true)[0]!;
}

export const indexUserIdUnique: CatalogCheck<IndexRow> = {
  id: 'index.user-id-unique',
  title: 'Unique index on user_id',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table', 'user_id'],
  looksAt:
    'pg_index of telegram_sessions: a unique, valid, non-deferrable index (or UNIQUE constraint) under any ' +
    'name whose only key column is user_id, with no predicate or the predicate user_id IS NOT NULL. On a ' +
    'partitioned table: the partitioned index on the parent (valid only once every partition has its attached ' +
    'index), and the partition key of every level, which must be user_id alone for such an index to exist.',
  why:
    'Without it nothing stops two rows for the same Telegram user, and INSERT … ON CONFLICT (user_id) fails ' +
    'with SQLSTATE 42P10: the root cause of the database_save_failed incident. A unique index on a ' +
    'partitioned table must contain every partition-key column: partitioned by RANGE (created_at), say, a ' +
    'unique user_id cannot be enforced by an index at all.',
  example: {
    bad: 'CREATE INDEX telegram_sessions_user_id_idx ON public.telegram_sessions (user_id);   -- not unique',
    good: 'CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_user_id_unique ON public.telegram_sessions (user_id) WHERE user_id IS NOT NULL;',
  },
  sql: `SELECT ic.relname::text                            AS index,
       i.indisunique AS is_unique, i.indisvalid AS is_valid,
       i.indisready  AS is_ready,  i.indimmediate AS is_immediate,
       ic.relkind = 'I'                                AS is_partitioned,
       array(SELECT coalesce(a.attname::text, '(expression)')
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
              WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS keys,
       ${predicateText('i')} AS predicate
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c     ON c.oid = i.indrelid
  JOIN pg_catalog.pg_class ic    ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1::text AND c.relname = '${TABLE}'
 ORDER BY ic.relname`,
  evaluate(rows, env, facts) {
    const problem = userIdKeyProblem(facts, env.schema);
    if (problem !== null) return { status: 'fail', detail: `impossible here: ${problem}`, remedy: uniqueIndexRemedy(env, facts) };
    const good = rows.find(isArbiter);
    if (good) {
      return {
        status: 'ok',
        detail: `${good.index}: unique on (user_id)${good.predicate ? ` WHERE ${good.predicate}` : ''}${good.is_partitioned ? ', on every partition' : ''}`,
      };
    }
    const nearMisses = rows
      .map((r) => ({ r, why: whyNotArbiter(r) }))
      .filter((x) => x.why !== null)
      .map((x) => `${x.r.index} is ${x.why}`);
    const detail = ['no unique index on (user_id)', ...nearMisses].join('; ');
    const unfinished = rows.find((r) => r.is_partitioned && !r.is_valid && r.is_unique && r.keys.length === 1 && r.keys[0] === 'user_id');
    if (unfinished) {
      return { status: 'fail', detail, remedy: `finish ${unfinished.index}: see index.invalid for the statements` };
    }
    return { status: 'fail', detail, remedy: uniqueIndexRemedy(env, facts) };
  },
  remedy: (env) => uniqueIndexRemedy(env),
};
