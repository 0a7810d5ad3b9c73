/**
 * The incident's pre-fix state, as the demo builds it: the table with a TEXT session column, no
 * unique index on user_id, no diagnostic columns (auth_error, error_details), no upsert function,
 * and a few users saved twice or three times (what the missing index let in).
 * (The same schema as test/helpers/fixtures.ts preFixSchema; src never imports from test/.)
 */
import { qualify, quoteIdent } from '../../../db/ident.js';

/** Users and how many rows each has; ids look like Telegram user ids. */
export const DEMO_USERS: readonly { userId: string; rows: number }[] = [
  { userId: '524000101', rows: 3 },
  { userId: '524000102', rows: 2 },
  { userId: '524000103', rows: 1 },
  { userId: '524000104', rows: 2 },
  { userId: '524000105', rows: 1 },
  { userId: '524000106', rows: 1 },
];

export function preFixStateSql(schema: string): string {
  const s = quoteIdent(schema);
  const t = qualify(schema, 'telegram_sessions');
  const values = DEMO_USERS.map((u) => `('${u.userId}', ${u.rows})`).join(', ');
  return `CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE ${t} (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id          varchar(255) NOT NULL,
  user_id            varchar(255),
  session_string_enc text,
  key_id             varchar(64),
  status             varchar(20) NOT NULL DEFAULT 'pending',
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
-- Each user's saves, a day apart; the last one is the session that works.
-- session_string_enc: stand-ins for encrypted sessions (base64, 268 characters).
INSERT INTO ${t} (tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at)
SELECT 'demo-tenant', u.user_id,
       substr(repeat(encode(sha256(convert_to(u.user_id || '/' || n, 'UTF8')), 'base64'), 7), 1, 268),
       'key-2024-01', CASE WHEN n = u.rows THEN 'active' ELSE 'pending' END,
       timestamptz '2024-05-01 09:00+00' + n * interval '1 day',
       timestamptz '2024-05-01 09:00+00' + n * interval '1 day'
  FROM (VALUES ${values}) AS u(user_id, rows), generate_series(1, u.rows) AS n;`;
}
