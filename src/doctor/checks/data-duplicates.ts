import { tsmCommand } from '../../report/shell.js';
import { INDEX_ONLY_SETTINGS, LEAF_PLAN_SQL, estimatedNote, everyLeaf, heapQuery, missingStatistics, type LeafPlan } from '../data-plan.js';
import type { DataCheck, DoctorEnv, ExactQuery } from '../types.js';
import { about, plural, remedyText, tableRef } from '../util.js';

/** How many duplicated user_ids the detail lists (the worst first). */
const SHOWN = 5;

/** The worst duplicated user_ids; every row also carries the totals. */
export interface DuplicateRow {
  user_id: string;
  rows: number;
  /** user_ids with more than one row. */
  users: number;
  /** rows of those user_ids. */
  total_rows: number;
}

function query(env: DoctorEnv): string {
  return `SELECT user_id, rows, count(*) OVER () AS users, sum(rows) OVER () AS total_rows
  FROM (SELECT user_id, count(*) AS rows
          FROM ${tableRef(env)}
         WHERE user_id IS NOT NULL
         GROUP BY user_id
        HAVING count(*) > 1) d
 ORDER BY rows DESC, user_id
 LIMIT ${SHOWN}`;
}

/** Walking an index on user_id in order: a GroupAggregate over an index-only scan, partition by partition. */
const walk = (env: DoctorEnv): ExactQuery => ({
  path: 'index-only',
  settings: { ...INDEX_ONLY_SETTINGS, enable_hashagg: 'off', enable_sort: 'off', enable_partitionwise_aggregate: 'on' },
  sql: query(env),
});

/** Values the statistics saw more than once: at least this many rows each (by frequency × rows). */
const LIKELY = 1.5;

export const dataDuplicates: DataCheck<DuplicateRow, LeafPlan> = {
  id: 'data.duplicates',
  title: 'One row per user_id',
  severity: 'fail',
  kind: 'data',
  requires: ['table', 'user_id'],
  looksAt:
    `user_ids (not NULL) with more than one row; lists the ${SHOWN} with the most rows. Not scanned when ` +
    'index.user-id-unique is ok: a valid unique index already guarantees one row per user_id. Where an index on ' +
    'user_id exists (an INVALID one does not count), it walks that index (index-only) instead of hashing the ' +
    'whole table. Above the budget (about 1,000,000 rows by the planner) it reports the planner\'s estimate instead ' +
    '(n_distinct and null_frac of user_id: rows beyond one per user; most_common_vals: the user_ids the statistics ' +
    'sample saw more than once), marked "estimated", as a warning; --exact scans anyway, --estimate never scans.',
  why:
    'Duplicates are what the missing unique index let in. They make the unique index impossible to build ' +
    '(CREATE UNIQUE INDEX fails with 23505 and, built CONCURRENTLY, leaves an INVALID index) and make ' +
    'every read of "the" session for a user ambiguous.',
  example: {
    bad: "INSERT INTO public.telegram_sessions (tenant_id, user_id) VALUES ('t1', '42'), ('t1', '42');   -- possible without the unique index",
    good: '-- tsm dedupe keeps the newest row per user_id and moves the others to telegram_sessions_duplicates_archive',
  },
  planSql: LEAF_PLAN_SQL,
  exact(env, plan) {
    return everyLeaf(plan, (l) => l.user_id_index || l.not_null_index) ? walk(env) : heapQuery(query(env));
  },
  exactVariants(env) {
    return [
      { when: 'an index on user_id (every leaf)', query: walk(env) },
      { when: 'otherwise (reads the table)', query: heapQuery(query(env)) },
    ];
  },
  settledBy(earlier) {
    const index = earlier.get('index.user-id-unique');
    if (index?.status !== 'ok') return null;
    return { status: 'ok', detail: `none possible: ${index.detail.split(':')[0]} enforces one row per user_id`, exact: true };
  },
  evaluate(rows) {
    if (rows.length === 0) return { status: 'ok', detail: 'none', exact: true };
    const users = Number(rows[0]!.users);
    const total = Number(rows[0]!.total_rows);
    const sorted = [...rows].sort((a, b) => Number(b.rows) - Number(a.rows) || String(a.user_id).localeCompare(String(b.user_id)));
    const worst = sorted.map((r) => `${JSON.stringify(String(r.user_id))} ×${r.rows}`).join(', ');
    const more = users > rows.length ? `, and ${users - rows.length} more` : '';
    return {
      status: 'fail',
      detail: `${plural(users, 'user_id')} with more than one row (${total} rows): ${worst}${more}`,
      exact: true,
    };
  },
  estimate(plan) {
    if (missingStatistics(plan, (l) => l.n_distinct !== null && l.null_frac !== null) !== null) return null;
    let extra = 0;
    let nonNull = 0;
    const likely: { value: string; rows: number }[] = [];
    for (const l of plan) {
      if (!(l.rows > 0) || l.n_distinct === null || l.null_frac === null) continue;
      const values = l.rows * (1 - l.null_frac);
      // n_distinct < 0: minus the share of distinct values among all rows; > 0: their number.
      const distinct = l.n_distinct < 0 ? -l.n_distinct * l.rows : l.n_distinct;
      nonNull += values;
      extra += Math.max(0, values - distinct);
      (l.mcv ?? []).forEach((value, i) => {
        const rows = (l.mcf?.[i] ?? 0) * l.rows;
        if (rows >= LIKELY) likely.push({ value, rows });
      });
    }
    // Single-precision statistics: a unique column can come out a few rows short of distinct.
    const found = extra >= Math.max(1, nonNull * 1e-5) || likely.length > 0;
    const note = estimatedNote(plan);
    if (!found) return { status: 'ok', detail: `none seen by the statistics (${note})`, exact: false };
    likely.sort((a, b) => b.rows - a.rows);
    const worst = likely.slice(0, SHOWN).map((x) => `${JSON.stringify(x.value)} ≈×${about(x.rows)}`);
    return {
      status: 'warn',
      detail:
        `about ${about(Math.max(extra, likely.reduce((s, x) => s + x.rows - 1, 0)))} rows beyond one per user_id` +
        `${worst.length > 0 ? `; most repeated: ${worst.join(', ')}` : ''} (${note}; --exact counts them)`,
      exact: false,
    };
  },
  remedy: (env) =>
    remedyText([
      `${tsmCommand(env.schema, 'dedupe --dry-run')}   (shows which rows would move)`,
      `${tsmCommand(env.schema, 'dedupe')}   (keeps the newest row per user_id, moves the others to telegram_sessions_duplicates_archive; nothing is deleted)`,
      `then ${tsmCommand(env.schema, 'migrate up')}   (the unique index can be built once the duplicates are gone)`,
    ]),
};
