import type { DataCheck } from '../types.js';
import { plural, remedyText, tableRef, tsmCommand } from '../util.js';

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

export const dataDuplicates: DataCheck<DuplicateRow> = {
  id: 'data.duplicates',
  title: 'One row per user_id',
  severity: 'fail',
  kind: 'data',
  requires: ['table', 'user_id'],
  looksAt:
    `user_ids (not NULL) with more than one row; lists the ${SHOWN} with the most rows. Not scanned when ` +
    'index.user-id-unique is ok: a valid unique index already guarantees one row per user_id.',
  why:
    'Duplicates are what the missing unique index let in. They make the unique index impossible to build ' +
    '(CREATE UNIQUE INDEX fails with 23505 and, built CONCURRENTLY, leaves an INVALID index) and make ' +
    'every read of "the" session for a user ambiguous.',
  sql: (env) => `SELECT user_id, rows, count(*) OVER () AS users, sum(rows) OVER () AS total_rows
  FROM (SELECT user_id, count(*) AS rows
          FROM ${tableRef(env)}
         WHERE user_id IS NOT NULL
         GROUP BY user_id
        HAVING count(*) > 1) d
 ORDER BY rows DESC, user_id
 LIMIT ${SHOWN}`,
  settledBy(earlier) {
    const index = earlier.get('index.user-id-unique');
    if (index?.status !== 'ok') return null;
    return { status: 'ok', detail: `none possible: ${index.detail.split(':')[0]} enforces one row per user_id` };
  },
  evaluate(rows) {
    if (rows.length === 0) return { status: 'ok', detail: 'none' };
    const users = Number(rows[0]!.users);
    const total = Number(rows[0]!.total_rows);
    const sorted = [...rows].sort((a, b) => Number(b.rows) - Number(a.rows) || String(a.user_id).localeCompare(String(b.user_id)));
    const worst = sorted.map((r) => `${JSON.stringify(String(r.user_id))} ×${r.rows}`).join(', ');
    const more = users > rows.length ? `, and ${users - rows.length} more` : '';
    return {
      status: 'fail',
      detail: `${plural(users, 'user_id')} with more than one row (${total} rows): ${worst}${more}`,
    };
  },
  remedy: (env) =>
    remedyText([
      `${tsmCommand(env, 'dedupe --dry-run')}   (shows which rows would move)`,
      `${tsmCommand(env, 'dedupe')}   (keeps the newest row per user_id, moves the others to telegram_sessions_duplicates_archive; nothing is deleted)`,
      `then ${tsmCommand(env, 'migrate up')}   (the unique index can be built once the duplicates are gone)`,
    ]),
};
