import type { DataCheck } from '../types.js';
import { plural, remedyText, tableRef } from '../util.js';

/** The count of rows with a NULL user_id. */
export interface NullUserIdRow {
  rows: number;
}

export const dataNullUserId: DataCheck<NullUserIdRow> = {
  id: 'data.null-user-id',
  title: 'Rows without a user_id',
  severity: 'warn',
  kind: 'data',
  requires: ['table', 'user_id'],
  looksAt: 'The number of rows whose user_id is NULL.',
  why:
    'user_id is NULL while a login is pending. The unique index (WHERE user_id IS NOT NULL) does not cover ' +
    'those rows and ON CONFLICT (user_id) never matches them, so retried or abandoned logins pile up as ' +
    'extra rows that no upsert ever replaces.',
  sql: (env) => `SELECT count(*) AS rows FROM ${tableRef(env)} WHERE user_id IS NULL`,
  evaluate(rows) {
    const n = Number(rows[0]?.rows ?? 0);
    if (n === 0) return { status: 'ok', detail: 'none' };
    return { status: 'warn', detail: `${plural(n, 'row')} with NULL user_id (pending or abandoned logins)` };
  },
  remedy: (env) =>
    remedyText(
      [],
      [`SELECT id, tenant_id, status, updated_at FROM ${tableRef(env)} WHERE user_id IS NULL ORDER BY updated_at;`],
      'look at them (rows of logins that never completed can be removed once you are sure):',
    ),
};
