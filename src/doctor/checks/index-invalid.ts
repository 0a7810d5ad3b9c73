import { tsmCommand } from '../../report/shell.js';
import { attachSql, buildSteps, childIndexName, indexSpec, partitionTree, relKey, treeCte, type Rel } from '../partitions.js';
import { predicateText } from '../sql.js';
import type { CatalogCheck, DoctorEnv, Facts } from '../types.js';
import { TABLE, UNIQUE_INDEX, normalizePredicate, plural, remedyText, shownIdent, shownRel, sqlQualified } from '../util.js';
import { createUniqueIndexSql, upLine } from './index-user-id-unique.js';

/** One row per index on the table and, when partitioned, on each of its partitions. */
export interface IndexStateRow {
  /** The table (or partition) the index is on, and the index (same schema). */
  schema: string;
  table: string;
  index: string;
  /** A partitioned index (relkind I): valid only once every partition has an attached index. */
  is_partitioned: boolean;
  is_unique: boolean;
  is_valid: boolean;
  is_ready: boolean;
  is_live: boolean;
  /** pg_stat_progress_create_index shows a build of it running. */
  build_in_progress: boolean;
  keys: string[];
  predicate: string | null;
  /** pg_get_indexdef, read only for indexes that are not valid or belong to a partition tree (it takes a lock). */
  definition: string | null;
  /** The partitioned index it is attached to (pg_inherits), or null; and that index's schema. */
  parent_index: string | null;
  parent_index_schema: string | null;
}

/** `CREATE [UNIQUE] INDEX name ON …` → the same with CONCURRENTLY. */
function concurrently(definition: string): string {
  return definition.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX CONCURRENTLY ') + ';';
}

const key = (r: Pick<IndexStateRow, 'schema' | 'index'>): string => relKey(r.schema, r.index);

/** Can `candidate` (on a partition) be attached under `parent` (same kind of index)? */
function matches(parent: IndexStateRow, candidate: IndexStateRow): boolean {
  return (
    candidate.parent_index === null &&
    candidate.is_unique === parent.is_unique &&
    JSON.stringify(candidate.keys) === JSON.stringify(parent.keys) &&
    normalizePredicate(candidate.predicate ?? '') === normalizePredicate(parent.predicate ?? '') &&
    indexSpec(candidate.definition ?? '')?.replace(/ WHERE .*$/, '') === indexSpec(parent.definition ?? '')?.replace(/ WHERE .*$/, '')
  );
}

/** A partition that has no attached valid index under an unfinished partitioned index, and why. */
interface Lacking {
  partition: Rel;
  state: string;
}

interface Completion {
  lacking: Lacking[];
  steps: string[];
  /** Indexes this completion takes care of (not reported again as plain INVALID ones). */
  covered: Set<string>;
}

/** What is missing under partitioned index `p` (on `rel`) and the statements that finish it, one level after the other. */
function complete(p: IndexStateRow, rel: Rel, rows: IndexStateRow[], env: DoctorEnv, taken: Set<string>): Completion {
  const out: Completion = { lacking: [], steps: [], covered: new Set([key(p)]) };
  const spec = indexSpec(p.definition ?? '') ?? '(user_id) WHERE user_id IS NOT NULL';
  for (const child of rel.children) {
    const onChild = rows.filter((r) => r.schema === child.schema && r.table === child.name);
    const attached = onChild.find((r) => r.parent_index === p.index && r.parent_index_schema === p.schema);
    if (attached) {
      if (attached.is_partitioned && !attached.is_valid) {
        const sub = complete(attached, child, rows, env, taken);
        out.lacking.push(...sub.lacking);
        out.steps.push(...sub.steps);
        sub.covered.forEach((k) => out.covered.add(k));
      }
      continue;
    }
    const candidate = onChild.find((r) => matches(p, r));
    const shown = shownRel(child.schema, child.name, env.schema);
    if (candidate) {
      out.covered.add(key(candidate));
      if (candidate.is_valid && candidate.is_ready) {
        out.lacking.push({ partition: child, state: `valid ${shownIdent(candidate.index)} not attached` });
      } else if (candidate.is_partitioned) {
        const sub = complete(candidate, child, rows, env, taken);
        out.lacking.push({ partition: child, state: `${shownIdent(candidate.index)} not attached and not complete` }, ...sub.lacking);
        out.steps.push(...sub.steps);
        sub.covered.forEach((k) => out.covered.add(k));
      } else if (candidate.build_in_progress) {
        out.lacking.push({ partition: child, state: `${shownIdent(candidate.index)} still being built` });
        out.steps.push(`-- wait for the running build of ${shownIdent(candidate.index)} on ${shown}, then:`);
      } else {
        out.lacking.push({ partition: child, state: `INVALID ${shownIdent(candidate.index)} (a failed concurrent build)` });
        out.steps.push(`DROP INDEX CONCURRENTLY IF EXISTS ${sqlQualified(candidate.schema, candidate.index)};`);
        out.steps.push(candidate.definition ? concurrently(candidate.definition) : `-- rebuild ${shownIdent(candidate.index)} CONCURRENTLY as it was defined`);
      }
      out.steps.push(attachSql(p.schema, p.index, child.schema, candidate.index));
      continue;
    }
    const name = childIndexName(child.name, p.index, rel.name, taken);
    out.lacking.push({ partition: child, state: 'no index' });
    out.steps.push(...buildSteps(child, name, spec, p.is_unique, taken));
    out.steps.push(attachSql(p.schema, p.index, child.schema, name));
  }
  return out;
}

export const indexInvalid: CatalogCheck<IndexStateRow> = {
  id: 'index.invalid',
  title: 'No invalid indexes',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  looksAt:
    'indisvalid and indisready of every index on telegram_sessions and, when it is partitioned, on each of its ' +
    'partitions (pg_inherits). An index that is not valid while pg_stat_progress_create_index shows its build ' +
    "running is a build in progress, not a failure, and is skipped (a role without pg_read_all_stats cannot see other " +
    "roles' builds). A partitioned index that is not valid is one whose partitions do not all have an attached valid " +
    'index yet (built ON ONLY the parent, partitions still to build or attach): the check names those partitions.',
  why:
    'A failed CREATE INDEX CONCURRENTLY (duplicates, a lock timeout, a cancel) leaves an INVALID index: ' +
    'queries and ON CONFLICT ignore it, yet writes may still maintain (and, if unique, enforce) it, and ' +
    'CREATE INDEX IF NOT EXISTS silently skips it, so it is never rebuilt. A partitioned index stays unusable ' +
    '(ON CONFLICT fails with 42P10) until the last partition\'s index is attached.',
  example: {
    bad:
      "CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_user_id_unique ON public.telegram_sessions (user_id) WHERE user_id IS NOT NULL;\n" +
      '-- ERROR: could not create unique index … Key (user_id)=(42) is duplicated: the INVALID index stays behind',
    good:
      'DROP INDEX CONCURRENTLY IF EXISTS public.telegram_sessions_user_id_unique;\n' +
      '-- remove the duplicates (tsm dedupe), then build it again:\n' +
      'CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_user_id_unique ON public.telegram_sessions (user_id) WHERE user_id IS NOT NULL;',
  },
  sql: `WITH RECURSIVE tbl AS (
  SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = $1::text AND c.relname = '${TABLE}' AND c.relkind IN ('r', 'p')
), ${treeCte('(SELECT oid FROM tbl)')}
SELECT tn.nspname::text AS schema, tc.relname::text AS table, ic.relname::text AS index,
       ic.relkind = 'I' AS is_partitioned, i.indisunique AS is_unique,
       i.indisvalid AS is_valid, i.indisready AS is_ready, i.indislive AS is_live,
       i.indexrelid IN (SELECT p.index_relid FROM pg_catalog.pg_stat_progress_create_index p) AS build_in_progress,
       array(SELECT coalesce(a.attname::text, '(expression)')
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
              WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS keys,
       ${predicateText('i')} AS predicate,
       -- pg_get_indexdef locks the table: only where a remedy needs the definition
       CASE WHEN NOT (i.indisvalid AND i.indisready) OR ic.relkind = 'I' OR tree.level > 0
            THEN pg_catalog.pg_get_indexdef(i.indexrelid) END AS definition,
       pc.relname::text                               AS parent_index,
       pn.nspname::text                               AS parent_index_schema
  FROM tree
  JOIN pg_catalog.pg_index i      ON i.indrelid = tree.relid
  JOIN pg_catalog.pg_class tc     ON tc.oid = i.indrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
  JOIN pg_catalog.pg_class ic     ON ic.oid = i.indexrelid
  LEFT JOIN pg_catalog.pg_inherits h   ON h.inhrelid = i.indexrelid
  LEFT JOIN pg_catalog.pg_class pc     ON pc.oid = h.inhparent
  LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
 ORDER BY tc.relname = '${TABLE}' DESC, tn.nspname, tc.relname, ic.relname`,
  evaluate(rows, env, facts) {
    const root = partitionTree(facts, env.schema);
    const rels = new Map<string, Rel>();
    const walk = (r: Rel): void => {
      rels.set(relKey(r.schema, r.name), r);
      r.children.forEach(walk);
    };
    walk(root);
    const taken = new Set(rows.map((r) => r.index));

    // Unfinished partitioned indexes, from the top of each index tree (attached ones are finished with their parent).
    const unfinished = rows.filter((r) => r.is_partitioned && !r.is_valid && r.parent_index === null);
    const completions = unfinished.map((p) => ({ p, c: complete(p, rels.get(relKey(p.schema, p.table)) ?? { ...root, children: [] }, rows, env, taken) }));
    const covered = new Set(completions.flatMap(({ c }) => [...c.covered]));

    const notValid = rows.filter((r) => !(r.is_valid && r.is_ready) && !r.is_partitioned && !covered.has(key(r)));
    const building = notValid.filter((r) => r.build_in_progress);
    const invalid = notValid.filter((r) => !r.build_in_progress);
    const where = (r: IndexStateRow): string => (r.table === TABLE && r.schema === env.schema ? '' : ` on ${shownRel(r.schema, r.table, env.schema)}`);
    const name = (r: IndexStateRow): string => `${shownIdent(r.index)}${where(r)}`;
    const note = building.length > 0 ? `; build in progress (not counted): ${building.map(name).join(', ')}` : '';
    const parts = facts.partitioning ? ` (on the table and its ${plural(facts.partitions.length, 'partition')})` : '';

    if (invalid.length === 0 && completions.length === 0) {
      return { status: 'ok', detail: `${rows.length - building.length} of ${rows.length} indexes valid${parts}${note}` };
    }
    const problems: string[] = [];
    for (const { p, c } of completions) {
      const total = rels.get(relKey(p.schema, p.table))?.children.length ?? 0;
      const list = c.lacking.map((l) => `${shownRel(l.partition.schema, l.partition.name, env.schema)}: ${l.state}`).join(', ');
      problems.push(
        `${name(p)} is a partitioned index that is not valid yet (not a failed build): ` +
          `${plural(c.lacking.length, 'partition')}${total > 0 ? ` of ${total}` : ''} lack an attached valid index (${list})`,
      );
    }
    if (invalid.length > 0) problems.push(`INVALID (left by a failed concurrent build): ${invalid.map(name).join(', ')}`);
    return { status: 'fail', detail: problems.join('; ') + note, remedy: remedyFor(invalid, completions, env, facts) };
  },
  remedy: (env) => remedyFor([{ schema: env.schema, index: UNIQUE_INDEX, table: TABLE }], [], env, null),
};

function remedyFor(
  invalid: (Pick<IndexStateRow, 'schema' | 'index' | 'table'> & Partial<IndexStateRow>)[],
  completions: { p: IndexStateRow; c: Completion }[],
  env: DoctorEnv,
  facts: Facts | null,
): string {
  const commands: string[] = [];
  const sql: string[] = [];
  for (const { c } of completions) sql.push(...c.steps);
  for (const r of invalid) {
    sql.push(`DROP INDEX CONCURRENTLY IF EXISTS ${sqlQualified(r.schema, r.index)};`);
    sql.push(typeof r.definition === 'string' ? concurrently(r.definition) : createUniqueIndexSql(env));
  }
  const ours = (r: { schema: string; index: string; table: string }): boolean => r.index === UNIQUE_INDEX && r.schema === env.schema && r.table === TABLE;
  if (completions.some(({ p }) => ours(p))) {
    commands.push(...(facts ? upLine(env, facts, `finishes ${UNIQUE_INDEX}: builds each missing partition index CONCURRENTLY and attaches it`) : []));
  }
  if (invalid.some(ours)) {
    const what = `drops the invalid ${UNIQUE_INDEX} and rebuilds it`;
    commands.push(...(facts ? upLine(env, facts, what) : [`${tsmCommand(env.schema, 'migrate up')}   (${what})`]));
  }
  if (commands.length > 0) commands.push(`if data.duplicates fails, run ${tsmCommand(env.schema, 'dedupe')} first, or the rebuild fails again`);
  return remedyText(commands, sql, commands.length > 0 ? 'or by hand, one statement at a time:' : 'run, one statement at a time:');
}
