/**
 * SQL fragments the doctor checks share. Catalog deparsing functions (pg_get_expr, pg_get_indexdef)
 * take a lock on the table, so behind a migration's ACCESS EXCLUSIVE lock they wait: doctor reads
 * what it can from the stored catalog instead and deparses only where it must show the text.
 */

/** SQL: the attnum of user_id in the table of index `i` (pg_index alias). */
export const userIdAttnum = (i: string): string =>
  `(SELECT a.attnum FROM pg_catalog.pg_attribute a WHERE a.attrelid = ${i}.indrelid AND a.attname = 'user_id' AND NOT a.attisdropped)`;

/**
 * SQL: whether index `i`'s predicate is exactly `user_id IS NOT NULL`, read from the stored node
 * tree (a NULLTEST of IS_NOT_NULL on the user_id column) without deparsing it.
 */
export const isUserIdNotNull = (i: string): string =>
  `(${i}.indpred IS NOT NULL AND ${i}.indpred::text ~ ('^\\{NULLTEST :arg \\{VAR :varno 1 :varattno ' || ${userIdAttnum(i)} || ' [^{}]*\\} :nulltesttype 1 '))`;

/** SQL: index `i`'s predicate as text (null without one); deparsed (a lock) only when it is not `user_id IS NOT NULL`. */
export const predicateText = (i: string): string =>
  `CASE WHEN ${i}.indpred IS NULL THEN NULL
            WHEN ${isUserIdNotNull(i)} THEN '(user_id IS NOT NULL)'
            ELSE pg_catalog.pg_get_expr(${i}.indpred, ${i}.indrelid) END`;
