/**
 * What the data checks know before they read a single row, from one catalog query per check
 * (sent with the catalog checks, no scan): for every leaf of telegram_sessions (the table itself
 * when it is not partitioned) the planner's statistics of user_id and which indexes can answer
 * "how many NULL user_ids" and "which user_ids repeat" without reading the heap.
 */
import type { ExactQuery } from './types.js';
import { rowsOf, treeCte } from './partitions.js';
import { isUserIdNotNull } from './sql.js';
import { TABLE, about } from './util.js';

/** One leaf partition (or the table itself). */
export interface LeafPlan {
  schema: string;
  leaf: string;
  /** pg_class.reltuples, or the statistics' live tuples when never vacuumed or analyzed. */
  rows: number;
  /** pg_stats of user_id (null without statistics, or without SELECT on the column). */
  null_frac: number | null;
  n_distinct: number | null;
  mcv: string[] | null;
  mcf: number[] | null;
  /** When the statistics were gathered (last ANALYZE or autoanalyze), ISO 8601. */
  analyzed_at: string | null;
  /** A valid, non-partial btree index whose first key column is user_id. */
  user_id_index: boolean;
  /** A valid btree index whose first key column is user_id with the predicate user_id IS NOT NULL (tsm's unique index). */
  not_null_index: boolean;
  /** A valid, non-partial btree index (any columns, e.g. the primary key): count(*) without the heap. */
  full_index: boolean;
}

const btree = (cond: string): string => `EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_catalog.pg_am am    ON am.oid = ic.relam AND am.amname = 'btree'
                WHERE i.indrelid = lc.oid AND i.indisvalid AND i.indisready AND ${cond})`;

/** The catalog query ($1 = the schema): one row per leaf. */
export const LEAF_PLAN_SQL = `WITH RECURSIVE tbl AS (
  SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = $1::text AND c.relname = '${TABLE}' AND c.relkind IN ('r', 'p')
), ${treeCte('(SELECT oid FROM tbl)')}
SELECT ln.nspname::text AS schema, lc.relname::text AS leaf, ${rowsOf('lc')} AS rows,
       s.null_frac::float8 AS null_frac, s.n_distinct::float8 AS n_distinct,
       s.most_common_vals::text::text[] AS mcv, s.most_common_freqs::float8[] AS mcf,
       greatest(pg_catalog.pg_stat_get_last_analyze_time(lc.oid), pg_catalog.pg_stat_get_last_autoanalyze_time(lc.oid)) AS analyzed_at,
       ${btree('i.indpred IS NULL AND i.indkey[0] = ua.attnum')} AS user_id_index,
       ${btree(`i.indkey[0] = ua.attnum AND ${isUserIdNotNull('i')}`)} AS not_null_index,
       ${btree('i.indpred IS NULL')} AS full_index
  FROM tree
  JOIN pg_catalog.pg_class lc     ON lc.oid = tree.relid AND lc.relkind <> 'p'
  JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace
  LEFT JOIN pg_catalog.pg_attribute ua ON ua.attrelid = lc.oid AND ua.attname = 'user_id' AND NOT ua.attisdropped
  LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = ln.nspname AND s.tablename = lc.relname
                                 AND s.attname = 'user_id' AND NOT s.inherited
 ORDER BY ln.nspname, lc.relname`;

/** Settings that keep an index-only query on its index (only used where such an index exists on every leaf). */
export const INDEX_ONLY_SETTINGS: Readonly<Record<string, string>> = { enable_seqscan: 'off', enable_bitmapscan: 'off' };

/** Every leaf has an index of this kind (and there is at least one leaf). */
export const everyLeaf = (plan: LeafPlan[], has: (l: LeafPlan) => boolean): boolean => plan.length > 0 && plan.every(has);

/** Why the statistics cannot give an estimate (a leaf never analyzed, or no statistics readable), or null. */
export function missingStatistics(plan: LeafPlan[], needs: (l: LeafPlan) => boolean): string | null {
  if (plan.length === 0) return 'no leaf to read statistics from';
  const unknown = plan.filter((l) => l.rows > 0 && !needs(l));
  if (unknown.length === 0) return null;
  const names = unknown.slice(0, 3).map((l) => l.leaf).join(', ') + (unknown.length > 3 ? ', …' : '');
  return `no planner statistics of user_id for ${names} (never analyzed, or no SELECT on the column)`;
}

/** "planner statistics of 2025-06-01 12:00 UTC" (the oldest leaf's), for estimated details. */
export function statisticsAge(plan: LeafPlan[]): string {
  const times = plan.filter((l) => l.rows > 0 && l.analyzed_at).map((l) => Date.parse(l.analyzed_at!));
  if (times.length === 0) return 'planner statistics';
  const oldest = new Date(Math.min(...times)).toISOString().replace(/:\d\d\.\d+Z$/, ' UTC').replace('T', ' ');
  return `planner statistics of ${oldest}`;
}

/** Rows of the table by the statistics (leaves with a known size). */
export function plannedRows(plan: LeafPlan[]): number {
  return plan.reduce((sum, l) => sum + (l.rows > 0 ? l.rows : 0), 0);
}

/** `estimated (planner statistics of …, about N rows)`, the suffix of every estimated detail. */
export function estimatedNote(plan: LeafPlan[]): string {
  return `estimated from ${statisticsAge(plan)}, table of about ${about(plannedRows(plan))} rows`;
}

/** The heap-reading exact query. */
export function heapQuery(sql: string): ExactQuery {
  return { path: 'heap', settings: {}, sql };
}
