import type { Client, QueryResult, QueryResultRow } from 'pg';

/** How long doctor waits for a table lock (a migration's ALTER, say) before giving up on a check. */
export const LOCK_TIMEOUT = '5s';

/**
 * `SET LOCAL` settings of every doctor transaction. JIT is off: every doctor run is a fresh
 * backend, where loading the JIT compiler costs more than these scans gain from it.
 */
const BASE_SETTINGS: Readonly<Record<string, string>> = { lock_timeout: LOCK_TIMEOUT, jit: 'off' };

/**
 * Runs `sql` (no parameters; one statement or several) in a READ ONLY transaction that is rolled
 * back, in one round trip (one simple-query message: it stays on one server connection through a
 * transaction-mode pooler, and leaves no setting behind): the server itself refuses any write.
 * `settings` are `SET LOCAL` in that transaction. Returns the statements' results.
 */
export async function inReadOnlyTransaction<R extends QueryResultRow = Record<string, unknown>>(
  client: Client,
  sql: string,
  settings: Readonly<Record<string, string>> = {},
): Promise<QueryResult<R>[]> {
  const all = { ...BASE_SETTINGS, ...settings };
  const text = readOnlyText(sql, settings);
  try {
    // Several statements in one string: pg returns one result per statement (typed as one).
    const res = (await client.query<R>(text)) as unknown as QueryResult<R> | QueryResult<R>[];
    const results = Array.isArray(res) ? res : [res];
    // BEGIN, one SET per setting, …the statement(s)…, ROLLBACK
    return results.slice(1 + Object.keys(all).length, -1);
  } catch (err) {
    // The transaction is left aborted: end it so the connection stays usable.
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** A setting's value as a literal: only the plain words and numbers doctor uses. */
function settingValue(v: string): string {
  if (!/^[A-Za-z0-9_.]+$/.test(v)) throw new Error(`doctor: unexpected setting value ${JSON.stringify(v)}`);
  return `'${v}'`;
}

/** `BEGIN READ ONLY;` and doctor's `SET LOCAL` settings (plus `settings`): the start of every doctor transaction. */
export function beginReadOnlyText(settings: Readonly<Record<string, string>> = {}): string {
  const all = { ...BASE_SETTINGS, ...settings };
  const sets = Object.entries(all)
    .map(([k, v]) => {
      if (!/^[a-z_]+$/.test(k)) throw new Error(`doctor: unexpected setting ${JSON.stringify(k)}`);
      return `SET LOCAL ${k} = ${settingValue(v)};`;
    })
    .join(' ');
  return `BEGIN READ ONLY;\n${sets}`;
}

/** The text sent by inReadOnlyTransaction (also what --explain shows). */
export function readOnlyText(sql: string, settings: Readonly<Record<string, string>> = {}): string {
  return `${beginReadOnlyText(settings)}\n${sql};\nROLLBACK;`;
}
