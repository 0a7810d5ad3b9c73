import { INDEX_ONLY_SETTINGS, LEAF_PLAN_SQL, estimatedNote, everyLeaf, heapQuery, missingStatistics, type LeafPlan } from '../data-plan.js';
import type { DataCheck, DoctorEnv, ExactQuery } from '../types.js';
import { about, plural, remedyText, tableRef } from '../util.js';

/** The count of rows with a NULL user_id. */
export interface NullUserIdRow {
  rows: number;
}

/** The three exact ways to count, cheapest first. */
function variants(env: DoctorEnv): { byIndex: ExactQuery; byDifference: ExactQuery; byHeap: ExactQuery } {
  const t = tableRef(env);
  return {
    byIndex: { path: 'index-only', settings: INDEX_ONLY_SETTINGS, sql: `SELECT count(*) AS rows FROM ${t} WHERE user_id IS NULL` },
    byDifference: {
      path: 'index-only',
      settings: INDEX_ONLY_SETTINGS,
      sql: `SELECT (SELECT count(*) FROM ${t}) - (SELECT count(*) FROM ${t} WHERE user_id IS NOT NULL) AS rows`,
    },
    byHeap: heapQuery(`SELECT count(*) AS rows FROM ${t} WHERE user_id IS NULL`),
  };
}

function verdict(n: number, suffix = ''): { status: 'ok' | 'warn'; detail: string } {
  if (n === 0) return { status: 'ok', detail: `none${suffix}` };
  return { status: 'warn', detail: `${plural(n, 'row')} with NULL user_id (pending or abandoned logins)${suffix}` };
}

export const dataNullUserId: DataCheck<NullUserIdRow, LeafPlan> = {
  id: 'data.null-user-id',
  title: 'Rows without a user_id',
  severity: 'warn',
  kind: 'data',
  requires: ['table', 'user_id'],
  looksAt:
    'The number of rows whose user_id is NULL. Counted without reading the table\'s rows where an index allows it ' +
    '(an index-only scan of an index on user_id; or the rows of a full index such as the primary key minus the ' +
    'entries of the partial unique index WHERE user_id IS NOT NULL); on a table above the budget (about 1,000,000 ' +
    'rows by the planner) it reports the planner\'s estimate (reltuples × null_frac of every leaf) instead, marked ' +
    '"estimated"; --exact counts anyway, --estimate never counts. On a partitioned table: every leaf partition.',
  why:
    'user_id is NULL while a login is pending. The unique index (WHERE user_id IS NOT NULL) does not cover ' +
    'those rows and ON CONFLICT (user_id) never matches them, so retried or abandoned logins pile up as ' +
    'extra rows that no upsert ever replaces.',
  example: {
    bad: "INSERT INTO public.telegram_sessions (tenant_id, user_id, status) VALUES ('t1', NULL, 'pending');   -- a login that never completed",
    good: "DELETE FROM public.telegram_sessions WHERE user_id IS NULL AND status = 'pending' AND updated_at < now() - interval '1 day';",
  },
  planSql: LEAF_PLAN_SQL,
  exact(env, plan) {
    const v = variants(env);
    if (everyLeaf(plan, (l) => l.user_id_index)) return v.byIndex;
    if (everyLeaf(plan, (l) => l.not_null_index && l.full_index)) return v.byDifference;
    return v.byHeap;
  },
  exactVariants(env) {
    const v = variants(env);
    return [
      { when: 'an index on user_id (every leaf)', query: v.byIndex },
      { when: 'the partial unique index WHERE user_id IS NOT NULL and a full index such as the primary key (every leaf)', query: v.byDifference },
      { when: 'otherwise (reads the table)', query: v.byHeap },
    ];
  },
  evaluate(rows) {
    return { ...verdict(Number(rows[0]?.rows ?? 0)), exact: true };
  },
  estimate(plan) {
    if (missingStatistics(plan, (l) => l.null_frac !== null) !== null) return null;
    const n = Math.round(plan.reduce((sum, l) => sum + (l.rows > 0 ? l.rows * (l.null_frac ?? 0) : 0), 0));
    const v = verdict(n, ` (${estimatedNote(plan)})`);
    return { ...v, detail: n === 0 ? v.detail : v.detail.replace(/^[\d,]+ /, `about ${about(n)} `), exact: false };
  },
  remedy: (env) =>
    remedyText(
      [],
      [`SELECT id, tenant_id, status, updated_at FROM ${tableRef(env)} WHERE user_id IS NULL ORDER BY updated_at LIMIT 100;`],
      'look at them (rows of logins that never completed can be removed once you are sure):',
    ),
};
