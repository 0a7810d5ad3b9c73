import type { Client, QueryResult, QueryResultRow } from 'pg';

/** How long doctor waits for a table lock (a migration's ALTER, say) before giving up on a check. */
export const LOCK_TIMEOUT = '5s';

/**
 * Runs `sql` (no parameters) in a READ ONLY transaction that is rolled back, in one round trip:
 * the server itself refuses any write. Returns the statement's result(s).
 */
export async function inReadOnlyTransaction<R extends QueryResultRow = Record<string, unknown>>(client: Client, sql: string): Promise<QueryResult<R>[]> {
  const text = readOnlyText(sql);
  try {
    // Several statements in one string: pg returns one result per statement (typed as one).
    const res = (await client.query<R>(text)) as unknown as QueryResult<R> | QueryResult<R>[];
    const all = Array.isArray(res) ? res : [res];
    // BEGIN, SET, SET, …the statement(s)…, ROLLBACK
    return all.slice(3, -1);
  } catch (err) {
    // The transaction is left aborted: end it so the connection stays usable.
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * The text sent by inReadOnlyTransaction (also what --explain shows). JIT is off: every doctor run is
 * a fresh backend, where loading the JIT compiler costs more than these scans gain from it.
 */
export function readOnlyText(sql: string): string {
  return `BEGIN READ ONLY;\nSET LOCAL lock_timeout = '${LOCK_TIMEOUT}'; SET LOCAL jit = off;\n${sql};\nROLLBACK;`;
}
