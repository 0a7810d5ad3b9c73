import { quoteIdent } from '../../db/ident.js';
import type { CatalogCheck } from '../types.js';
import { TABLE, remedyText, tableRef } from '../util.js';
import { tsmCommand } from '../../report/shell.js';

/** One row per session-like column. */
export interface SessionColumnRow {
  column: string;
  type: string;
  /** n of varchar(n) / char(n) (also through a domain); null for text and other types. */
  max_length: number | null;
}

function tooShort(r: SessionColumnRow, min: number): boolean {
  return r.max_length != null && Number(r.max_length) < min;
}

export const columnsSessionTypes: CatalogCheck<SessionColumnRow> = {
  id: 'columns.session-types',
  title: 'Session columns can hold a real session',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  example: {
    bad: 'ALTER TABLE public.telegram_sessions ALTER COLUMN session_string_enc TYPE varchar(255);   -- an 800-character session fails with 22001',
    good: 'ALTER TABLE public.telegram_sessions ALTER COLUMN session_string_enc TYPE text;   -- binary-coercible from varchar: no table rewrite',
  },
  looksAt:
    "Every column of telegram_sessions whose name contains 'session' or 'telethon': its type and, for " +
    'varchar(n) / char(n) (also through a domain), its maximum length n, compared with --min-session-length ' +
    '(default 4096).' +
    ' Partitions have the parent\'s columns and types (PostgreSQL enforces it), so the parent speaks for them.',
  why:
    'An encrypted Telethon StringSession is several hundred characters (about 800 in the incident) and grows ' +
    'with encryption overhead. A varchar(n) that is too short fails the save with SQLSTATE 22001 ' +
    '(session_too_long); text has no limit and costs nothing extra.',
  sql: `SELECT a.attname::text                                  AS column,
       pg_catalog.format_type(a.atttypid, a.atttypmod)  AS type,
       CASE WHEN b.typname IN ('varchar', 'bpchar')
             AND (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) > 4
            THEN (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) - 4
       END                                              AS max_length
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c     ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t      ON t.oid = a.atttypid
  JOIN pg_catalog.pg_type b      ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
 WHERE n.nspname = $1::text AND c.relname = '${TABLE}'
   AND a.attnum > 0 AND NOT a.attisdropped
   AND (a.attname ILIKE '%session%' OR a.attname ILIKE '%telethon%')
 ORDER BY a.attnum`,
  evaluate(rows, env) {
    if (rows.length === 0) {
      return { status: 'skipped', detail: "no session-like column (name containing 'session' or 'telethon')" };
    }
    const bad = rows.filter((r) => tooShort(r, env.minSessionLength));
    if (bad.length === 0) {
      return { status: 'ok', detail: rows.map((r) => `${r.column} ${r.type}`).join(', ') };
    }
    const detail = bad
      .map((r) => `${r.column} is ${r.type}: holds at most ${r.max_length} characters`)
      .join('; ');
    return {
      status: 'fail',
      detail: `${detail} (needs text, or at least ${env.minSessionLength})`,
      remedy: remedyText(
        [`${tsmCommand(env.schema, 'migrate up')}   (widens varchar session columns to text, no table rewrite)`],
        bad.map((r) => `ALTER TABLE ${tableRef(env)} ALTER COLUMN ${quoteIdent(r.column)} TYPE text;`),
      ),
    };
  },
  remedy: (env) =>
    remedyText(
      [`${tsmCommand(env.schema, 'migrate up')}   (widens varchar session columns to text, no table rewrite)`],
      [`ALTER TABLE ${tableRef(env)} ALTER COLUMN session_string_enc TYPE text;`],
    ),
};
