/**
 * The SQL of `tsm dedupe`. Every statement touches telegram_sessions with row locks only (plain
 * SELECT, SELECT … FOR UPDATE SKIP LOCKED, DELETE by id): never LOCK TABLE, never DDL on it.
 */
import { qualify, quoteIdent } from '../db/ident.js';
import { ARCHIVE, TABLE, type TableShape } from './shape.js';

export type KeepPolicy = 'newest' | 'oldest';

/**
 * The order in which rows of one user_id are ranked: the first is kept. newest = latest
 * updated_at, then latest created_at, then highest id; oldest = the reverse. NULL dates rank last
 * either way (an unknown date never wins).
 */
export function keepOrder(shape: TableShape, keep: KeepPolicy, alias = ''): string {
  const dir = keep === 'newest' ? 'DESC' : 'ASC';
  const col = (c: string): string => alias + quoteIdent(c);
  const parts = [`${col('updated_at')} ${dir} NULLS LAST`];
  if (shape.hasCreatedAt) parts.push(`${col('created_at')} ${dir} NULLS LAST`);
  parts.push(`${col('id')} ${dir}`);
  return parts.join(', ');
}

export function tableRef(shape: TableShape): string {
  return qualify(shape.schema, TABLE);
}

export function archiveRef(shape: TableShape): string {
  return qualify(shape.schema, ARCHIVE);
}

/**
 * Every duplicated user_id with its rows' ids, in keep order (the first is the one that would be
 * kept). One plain scan; no locks beyond ACCESS SHARE. Also the --dry-run answer.
 */
export function planSql(shape: TableShape, keep: KeepPolicy): string {
  return `SELECT user_id::text AS user_id, count(*)::int AS rows,
       array_agg(id::text ORDER BY ${keepOrder(shape, keep)}) AS ids
  FROM ${tableRef(shape)}
 WHERE user_id IS NOT NULL
 GROUP BY user_id
HAVING count(*) > 1
 ORDER BY user_id`;
}

/** Rows, duplicated user_ids and the rows beyond the first per duplicated user_id, right now. */
export function countsSql(shape: TableShape): string {
  return `SELECT (SELECT count(*) FROM ${tableRef(shape)})::bigint AS rows, d.duplicate_users, d.excess_rows
  FROM (SELECT count(*)::bigint AS duplicate_users, coalesce(sum(n - 1), 0)::bigint AS excess_rows
          FROM (SELECT count(*) AS n FROM ${tableRef(shape)} WHERE user_id IS NOT NULL
                 GROUP BY user_id HAVING count(*) > 1) g) d`;
}

export function archiveCountSql(shape: TableShape): string {
  return `SELECT count(*)::bigint AS rows FROM ${archiveRef(shape)}`;
}

/**
 * Step 1 of a batch (in its own READ COMMITTED transaction): lock the planned rows that still
 * exist. SKIP LOCKED: rows the application is writing right now are left for a later pass, so
 * dedupe never waits on a row lock and can never deadlock with the application. FOR UPDATE
 * returns the rows' latest committed versions.
 */
export function lockSql(shape: TableShape): string {
  return `SELECT id::text AS id
  FROM ${tableRef(shape)}
 WHERE id = ANY($1::text[]::${shape.idType}[]) AND user_id IS NOT NULL
 ORDER BY id
   FOR UPDATE SKIP LOCKED`;
}

/**
 * Step 2, same transaction, a new statement (so a new snapshot, taken after the locks are held:
 * the rows it ranks can no longer change). Among the locked rows of each user_id the first in
 * keep order stays; every other one is deleted and inserted, whole, into the archive in this one
 * statement. A crash before COMMIT leaves every row where it was; after COMMIT each moved row is
 * in the archive and not in the table. Rows of the user that were not locked (new, or busy) stay
 * in the table: they are never archived without having been ranked.
 */
export function moveSql(shape: TableShape, keep: KeepPolicy): string {
  const cols = shape.columns.map((c) => quoteIdent(c.name));
  return `WITH ranked AS (
  SELECT id,
         first_value(id) OVER w AS tsm_kept_id,
         row_number() OVER w AS tsm_rank
    FROM ${tableRef(shape)}
   WHERE id = ANY($1::text[]::${shape.idType}[]) AND user_id IS NOT NULL
  WINDOW w AS (PARTITION BY user_id ORDER BY ${keepOrder(shape, keep)})
), moved AS (
  DELETE FROM ${tableRef(shape)} t
   USING ranked r
   WHERE t.id = r.id AND r.tsm_rank > 1
  RETURNING ${cols.map((c) => 't.' + c).join(', ')}, r.tsm_kept_id
)
INSERT INTO ${archiveRef(shape)} (${cols.join(', ')}, archived_at, kept_id)
SELECT ${cols.join(', ')}, now(), tsm_kept_id FROM moved
RETURNING id::text AS id, user_id::text AS user_id, kept_id::text AS kept_id`;
}

/**
 * The row-by-row check of what this run moved: none of the ids is still in the table, and each
 * is in the archive exactly once (counting only archive rows written since the run started).
 */
export function verifySql(shape: TableShape): string {
  return `SELECT (SELECT count(*) FROM ${tableRef(shape)} WHERE id = ANY($1::text[]::${shape.idType}[]))::bigint AS in_table,
       (SELECT count(*) FROM ${archiveRef(shape)}
         WHERE id = ANY($1::text[]::${shape.idType}[]) AND archived_at >= $2::timestamptz)::bigint AS in_archive,
       (SELECT count(DISTINCT id) FROM ${archiveRef(shape)}
         WHERE id = ANY($1::text[]::${shape.idType}[]) AND archived_at >= $2::timestamptz)::bigint AS distinct_in_archive`;
}

/** One advisory lock per schema, in tsm's own key space, so two dedupes never run at once. */
export const LOCK_CLASS = 0x75d3_d0e0 | 0; // int4 "namespace" of tsm dedupe's advisory locks
export const TRY_LOCK_SQL = `SELECT pg_try_advisory_lock(${LOCK_CLASS}, hashtext($1)) AS locked`;
export const UNLOCK_SQL = `SELECT pg_advisory_unlock(${LOCK_CLASS}, hashtext($1))`;
export const LOCK_HOLDER_SQL = `SELECT l.pid FROM pg_catalog.pg_locks l
 WHERE l.locktype = 'advisory' AND l.classid = (${LOCK_CLASS})::oid AND l.objid = (hashtext($1))::oid
   AND l.objsubid = 2 AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
 LIMIT 1`;
