/**
 * The SQL of `tsm dedupe`. Every statement touches telegram_sessions with row locks only (plain
 * SELECT, DELETE of rows it planned, SELECT … FOR UPDATE SKIP LOCKED) and the table lock every
 * DELETE takes (ROW EXCLUSIVE, taken up front so that waiting for it never happens while row
 * locks are held): never a stronger LOCK TABLE, never DDL on it.
 *
 * One planning scan per pass ranks the rows of every duplicated user_id (in its snapshot) and
 * lists each row to move by its physical address (ctid), the version that was ranked (xmin) and
 * the id of the row kept. A batch then deletes planned rows only in that version: a row the
 * application changed since the plan is left in the table (the next pass ranks it again), and a
 * row inserted since was never planned. Because every planned row carries its own decision,
 * batches can take the rows in physical order, so each batch reads and writes a run of
 * neighbouring pages instead of pages anywhere in the table.
 */
import { qualify, quoteIdent } from '../db/ident.js';
import { ARCHIVE, TABLE, type Leaf, type TableShape } from './shape.js';

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

export function leafRef(leaf: Leaf): string {
  return qualify(leaf.schema, leaf.name);
}

/**
 * --dry-run: every duplicated user_id with its rows' ids, in keep order (the first is the one that
 * would be kept). One plain scan; no locks beyond ACCESS SHARE.
 */
export function listSql(shape: TableShape, keep: KeepPolicy): string {
  return `SELECT user_id::text AS user_id, count(*)::int AS rows,
       array_agg(id::text ORDER BY ${keepOrder(shape, keep)}) AS ids
  FROM ${tableRef(shape)}
 WHERE user_id IS NOT NULL
 GROUP BY user_id
HAVING count(*) > 1
 ORDER BY user_id`;
}

/**
 * The xmin of the planning scan's snapshot, as a 32-bit xid: every row the plan did not see (new,
 * or a new version of a row it saw) has an xmin at or after it.
 */
export const SNAPSHOT_XMIN_SQL = `SELECT ((pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::numeric % 4294967296)::bigint)::text AS xmin`;

/**
 * The check after a pass, one plain scan (no hashing of the table): rows in the table, rows with
 * an id this run moved ($1, the first half of the row-by-row check), and the user_ids of rows
 * written since the plan ($2, the plan snapshot's xmin; `age()` orders xids across wraparound,
 * and is largest for frozen rows). A user_id can only still have duplicates if it has such a row
 * or a planned row that was not moved; `duplicatesSql` counts exactly those.
 */
export function checkSql(shape: TableShape): string {
  const table = `SELECT count(*)::bigint AS rows,
       count(*) FILTER (WHERE id = ANY($1::${shape.idType}[]))::bigint AS moved_ids_in_table,
       array_agg(DISTINCT user_id::text) FILTER (WHERE user_id IS NOT NULL AND age(xmin) <= age($2::xid)) AS written_users
  FROM ${tableRef(shape)}`;
  if (shape.rowKey.length > 1) return table;
  // A one-column key (id): the archive half of the row-by-row check too, so the ids cross the wire once.
  return `SELECT c.*, a.in_archive, a.distinct_in_archive
  FROM (${table}) c,
       (SELECT count(*)::bigint AS in_archive, count(DISTINCT id)::bigint AS distinct_in_archive
          FROM ${archiveRef(shape)} WHERE archived_at >= $3::timestamptz AND id = ANY($1::${shape.idType}[])) a`;
}

/** Which user_ids of a batch's planned rows are still at their planned addresses (rows it did not move). */
export function leftAtSql(leaf: Leaf): string {
  return `SELECT DISTINCT user_id::text AS user_id FROM ${leafRef(leaf)} WHERE ctid = ANY($1::tid[]) AND user_id IS NOT NULL`;
}

/** Among the candidate user_ids ($1): those with more than one row, and the rows beyond the first. */
export function duplicatesSql(shape: TableShape): string {
  const userType = shape.columns.find((c) => c.name === 'user_id')!.type;
  return `SELECT count(*)::bigint AS duplicate_users, coalesce(sum(n - 1), 0)::bigint AS excess_rows
  FROM (SELECT count(*) AS n FROM ${tableRef(shape)} WHERE user_id = ANY($1::${userType}[]) GROUP BY user_id HAVING count(*) > 1) g`;
}

/**
 * Types whose text form never needs quoting in an array literal and holds no space or colon:
 * their values travel as plain text; any other id type is hex-encoded in the plan.
 */
export const PLAIN_ID_TYPES: ReadonlySet<string> = new Set(['uuid', 'bigint', 'integer', 'smallint']);

/**
 * The plan of a pass, in one statement: the duplicated user_ids (one hash aggregate over the
 * table), then only their rows, ranked in keep order; every row but the first of each user_id is
 * listed as `(block,offset)xmin:kept` (its address, the version ranked, the id of the row kept),
 * space-separated, in up to 64 texts per leaf partition (by a hash of the user_id): millions of
 * rows cross the wire as a few strings that JavaScript splits with one regular expression.
 * `users` counts the user_ids whose second row is in the text (each duplicated user_id once).
 *
 * The window partitions by user_id under the "C" collation: it only needs equal values together
 * (byte-wise equality is equality for every deterministic collation), and sorting millions of
 * strings byte-wise is much cheaper than by a linguistic collation such as en_US.UTF-8.
 */
export function planSql(shape: TableShape, keep: KeepPolicy): string {
  const kept = PLAIN_ID_TYPES.has(shape.idType) ? 'tsm_kept_id::text' : `encode(convert_to(tsm_kept_id::text, 'UTF8'), 'hex')`;
  return `WITH ranked AS (
  SELECT tableoid AS tsm_leaf, ctid AS tsm_tid, xmin AS tsm_xmin,
         first_value(id) OVER w AS tsm_kept_id,
         row_number() OVER w AS tsm_rank,
         hashtext(user_id::text) & 63 AS tsm_chunk
    FROM ${tableRef(shape)}
   WHERE user_id IN (SELECT user_id FROM ${tableRef(shape)} WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1)
  WINDOW w AS (PARTITION BY user_id COLLATE "C" ORDER BY ${keepOrder(shape, keep)})
)
SELECT tsm_leaf::int8::text AS leaf,
       count(*) FILTER (WHERE tsm_rank = 2)::int AS users,
       string_agg(tsm_tid::text || tsm_xmin::text || ':' || ${kept}, ' ') AS plan
  FROM ranked
 WHERE tsm_rank > 1
 GROUP BY tsm_leaf, tsm_chunk`;
}

export function rowCountSql(shape: TableShape): string {
  return `SELECT count(*)::bigint AS rows FROM ${tableRef(shape)}`;
}

export function archiveCountSql(shape: TableShape): string {
  return `SELECT count(*)::bigint AS rows FROM ${archiveRef(shape)}`;
}

/**
 * The end of a batch statement: delete the planned rows, insert them into the archive, and return
 * for each deleted row its planned address (the client knows the row kept for it), its key and
 * user_id, with the number of rows the archive took: a batch whose archive did not take every
 * deleted row (a trigger or a rule on the archive) is rolled back instead of committed.
 */
function moveTail(shape: TableShape, leaf: Leaf, using: string, where: string): string {
  const cols = shape.columns.map((c) => quoteIdent(c.name));
  const key = shape.rowKey.map((c) => `m.${quoteIdent(c.name)}::text AS ${quoteIdent('k_' + c.name)}`);
  return `moved AS (
  DELETE FROM ${leafRef(leaf)} t
   USING ${using}
   WHERE ${where}
  RETURNING ${cols.map((c) => 't.' + c).join(', ')}, p.tsm_kept_id, p.tsm_tid
), archived AS (
  INSERT INTO ${archiveRef(shape)} (${cols.join(', ')}, archived_at, kept_id)
  SELECT ${cols.join(', ')}, now(), tsm_kept_id FROM moved
  RETURNING 1
)
SELECT m.tsm_tid::text AS tsm_tid, ${key.join(', ')}, m.user_id::text AS user_id, (SELECT count(*) FROM archived)::int AS tsm_archived
  FROM moved m`;
}

/** $1 addresses, $2 versions, $3 kept ids: the batch's part of the plan. */
function plannedCte(shape: TableShape): string {
  return `planned AS (
  SELECT * FROM unnest($1::tid[], $2::xid[], $3::${shape.idType}[]) AS p(tsm_tid, tsm_xmin, tsm_kept_id)
)`;
}

/**
 * A batch, in one statement: delete the planned rows that are still in the version the plan
 * ranked (`t.xmin`), and archive each, whole, with the id of the row kept. A row updated since
 * the plan stays. It waits for a row the application is writing at that moment (bounded by the
 * batch's lock_timeout, after which the batch is rolled back and retried with
 * `moveSkipLockedSql`).
 */
export function moveSql(shape: TableShape, leaf: Leaf): string {
  return `WITH ${plannedCte(shape)}, ${moveTail(shape, leaf, 'planned p', 't.ctid = p.tsm_tid AND t.xmin = p.tsm_xmin AND t.user_id IS NOT NULL')}`;
}

/**
 * The same batch for rows the application keeps busy: lock the planned rows first, skipping any
 * that another transaction holds (so it never waits on a row, and can never deadlock with the
 * application), then move only the rows it locked.
 */
export function moveSkipLockedSql(shape: TableShape, leaf: Leaf): string {
  return `WITH ${plannedCte(shape)}, locked AS (
  SELECT t.ctid AS tsm_tid, p.tsm_kept_id
    FROM ${leafRef(leaf)} t JOIN planned p ON t.ctid = p.tsm_tid AND t.xmin = p.tsm_xmin AND t.user_id IS NOT NULL
     FOR UPDATE OF t SKIP LOCKED
), ${moveTail(shape, leaf, 'locked p', 't.ctid = p.tsm_tid')}`;
}

/**
 * The row-by-row check of what this run moved, by a row key of more than one column (a one-column
 * key is checked by `checkSql`): each moved row is in the archive exactly once (counting only
 * archive rows written since the run started). $1…$n are the key columns as arrays, $n+1 the
 * run's start. (That none is still in the table: `checkSql` counts the ids, `inTableSql` matches
 * whole keys.)
 *
 * Filtering on `id = ANY($id)` first: with a large array PostgreSQL hashes it and scans once; with
 * a small one it probes the index. (A join with the unnested keys can make the planner walk a whole
 * index with a heap fetch per row, after dedupe's deletes cleared the visibility map.)
 */
export function verifySql(shape: TableShape): string {
  const k = shape.rowKey;
  const param = (i: number): string => `$${i + 1}::${k[i]!.type}[]`;
  const idParam = param(k.findIndex((c) => c.name === 'id'));
  const names = k.map((c) => quoteIdent(c.name));
  const start = `$${k.length + 1}::timestamptz`;
  if (k.length === 1) {
    return `SELECT count(*)::bigint AS in_archive, count(DISTINCT a.id)::bigint AS distinct_in_archive
  FROM ${archiveRef(shape)} a
 WHERE a.archived_at >= ${start} AND a.id = ANY(${idParam})`;
  }
  const eq = names.map((n) => `a.${n} = m.${n}`).join(' AND ');
  const tuple = `(${names.map((n) => `a.${n}`).join(', ')})`;
  return `WITH m AS MATERIALIZED (SELECT * FROM unnest(${k.map((_, i) => param(i)).join(', ')}) AS m(${names.join(', ')}))
SELECT count(*)::bigint AS in_archive, count(DISTINCT ${tuple})::bigint AS distinct_in_archive
  FROM ${archiveRef(shape)} a JOIN m ON ${eq}
 WHERE a.archived_at >= ${start} AND a.id = ANY(${idParam})`;
}

/**
 * For a row key of more than one column: how many moved rows, matched by the whole key, are still
 * in the table. Only run when the counting scan found a moved id in the table at all.
 */
export function inTableSql(shape: TableShape): string {
  const k = shape.rowKey;
  const param = (i: number): string => `$${i + 1}::${k[i]!.type}[]`;
  const idParam = param(k.findIndex((c) => c.name === 'id'));
  const names = k.map((c) => quoteIdent(c.name));
  return `WITH m AS MATERIALIZED (SELECT * FROM unnest(${k.map((_, i) => param(i)).join(', ')}) AS m(${names.join(', ')}))
SELECT count(*)::bigint AS in_table
  FROM ${tableRef(shape)} t JOIN m ON ${names.map((n) => `t.${n} = m.${n}`).join(' AND ')}
 WHERE t.id = ANY(${idParam})`;
}

/**
 * Dedupe's advisory lock, in tsm's own key space, per schema: taken by every transaction of a
 * run that writes (pg_advisory_xact_lock: it ends with the transaction, so nothing outlives it on
 * a pooled connection), so two dedupes never interleave inside one batch.
 */
export const LOCK_CLASS = 0x75d3_d0e0 | 0; // int4 "namespace" of tsm dedupe's advisory locks
export const LOCK_KEY_SQL = `SELECT hashtext($1) AS key`;
export function lockSql(key: number): string {
  return `SELECT pg_advisory_xact_lock(${LOCK_CLASS}, ${key | 0})`;
}
/** The sessions holding dedupe's lock of a schema key (in this database). */
export const LOCK_HOLDERS_SQL = `SELECT l.pid FROM pg_catalog.pg_locks l
 WHERE l.locktype = 'advisory' AND l.classid = (${LOCK_CLASS})::oid AND l.objid = ($1::int4)::oid
   AND l.objsubid = 2 AND l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
 LIMIT 3`;

/** Who holds a lock on `relation` that keeps a ROW EXCLUSIVE request waiting (for the lock_timeout message). */
export const TABLE_BLOCKERS_SQL = `SELECT l.pid, l.mode
  FROM pg_catalog.pg_locks l
 WHERE l.locktype = 'relation' AND l.relation = $1::oid AND l.granted
   AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND l.pid <> pg_backend_pid()
 ORDER BY l.pid
 LIMIT 3`;
