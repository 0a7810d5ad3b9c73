import type { CatalogCheck, Outcome, Row } from '../types.js';
import { FUNCTION, plural, remedyText, stripSqlComments, tsmCommand } from '../util.js';

/** upsert_telegram_session(p_tenant_id varchar, p_user_id varchar, p_session_string_enc text, p_key_id varchar,
 *  p_status varchar, p_auth_error text, p_error_details text) RETURNS uuid */
export const EXPECTED_ARGS = [
  'character varying',
  'character varying',
  'text',
  'character varying',
  'character varying',
  'text',
  'text',
];

/** What the body does, judged from its text (comments removed). */
export function judgeBody(rawBody: string): Outcome {
  const body = stripSqlComments(rawBody);
  const onConflict = /\bON\s+CONFLICT\b/i.test(body);
  const inserts = /\bINSERT\s+INTO\b/i.test(body);
  const updates = /\bUPDATE\s+(?!SET\b)[\w".]+\s+(AS\s+\w+\s+)?SET\b/i.test(body);
  const retriesOnUnique = /\bunique_violation\b|'23505'/i.test(body);

  if (onConflict) {
    if (!/\bON\s+CONFLICT\s*\(\s*"?user_id"?\s*\)/i.test(body)) {
      return { status: 'warn', detail: 'uses ON CONFLICT, but not on (user_id): a second save for a user may fail or add a row' };
    }
    const doUpdate = /\bDO\s+UPDATE\b([\s\S]*)/i.exec(body)?.[1] ?? '';
    const guardsTenant = /\btenant_id\b/i.test(doUpdate) || /TSM01/i.test(body);
    if (doUpdate !== '' && !guardsTenant) {
      return {
        status: 'warn',
        detail: 'INSERT … ON CONFLICT (user_id) DO UPDATE without a tenant_id condition: a save can move a user to another tenant',
      };
    }
    return { status: 'ok', detail: 'INSERT … ON CONFLICT (user_id): race-free' };
  }
  if (inserts && retriesOnUnique) {
    return { status: 'ok', detail: 'INSERT with a unique_violation handler: race-free once the unique index exists' };
  }
  if (inserts && updates) {
    return {
      status: 'warn',
      detail:
        'racy: UPDATE-then-INSERT without ON CONFLICT; two first saves for one user both INSERT ' +
        '(a duplicate row, or 23505 once the unique index exists)',
    };
  }
  return { status: 'warn', detail: 'the body has no INSERT … ON CONFLICT (user_id): cannot confirm it is race-free' };
}

function sameArgs(r: Row): boolean {
  const args = (r.arg_types ?? []) as string[];
  return args.length === EXPECTED_ARGS.length && args.every((t, i) => t === EXPECTED_ARGS[i]);
}

export const functionUpsert: CatalogCheck = {
  id: 'function.upsert',
  title: 'Race-free upsert function',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  looksAt:
    `pg_proc: ${FUNCTION} in the schema, its argument types (varchar, varchar, text, varchar, varchar, ` +
    'text, text), its return type (uuid) and its body: INSERT … ON CONFLICT (user_id) with a tenant_id ' +
    'guard is race-free; an UPDATE-then-INSERT body is not.',
  why:
    'Applications save sessions through this function. Missing (or with another signature), every call fails ' +
    'with 42883. An UPDATE-then-INSERT body (the incident write-up\'s first fix) races: two concurrent first ' +
    'saves for one user both find nothing to update and both insert.',
  sql: `SELECT p.oid::regprocedure::text                          AS signature,
       array(SELECT pg_catalog.format_type(t.oid, NULL)
               FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(oid, ord)
               JOIN pg_catalog.pg_type t ON t.oid = a.oid
              ORDER BY a.ord)                              AS arg_types,
       pg_catalog.pg_get_function_result(p.oid)            AS returns,
       l.lanname::text                                     AS language,
       p.prokind::text                                     AS kind,
       CASE WHEN p.prosrc <> '' THEN p.prosrc
            ELSE pg_catalog.pg_get_functiondef(p.oid) END  AS body
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_language l  ON l.oid = p.prolang
 WHERE n.nspname = $1::text AND p.proname = '${FUNCTION}'
 ORDER BY p.oid`,
  evaluate(rows) {
    if (rows.length === 0) return { status: 'fail', detail: `${FUNCTION} does not exist` };
    const match = rows.find((r) => sameArgs(r) && r.kind === 'f');
    if (!match) {
      return {
        status: 'fail',
        detail: `no ${FUNCTION}(varchar, varchar, text, varchar, varchar, text, text); found ${rows.map((r) => r.signature).join(', ')}`,
      };
    }
    if (match.returns !== 'uuid') return { status: 'fail', detail: `returns ${match.returns}, not uuid` };
    const verdict = judgeBody(String(match.body ?? ''));
    if (rows.length > 1 && verdict.status === 'ok') {
      return {
        status: 'warn',
        detail: `${plural(rows.length, 'overload')}: calls that rely on defaults may be ambiguous (42725); ${rows.map((r) => r.signature).join(', ')}`,
        remedy: remedyText([], rows.filter((r) => r !== match).map((r) => `DROP FUNCTION ${r.signature};   -- after checking nothing calls it`)),
      };
    }
    return verdict;
  },
  remedy: (env) =>
    remedyText([
      `${tsmCommand(env, 'migrate up')}   (installs the race-free INSERT … ON CONFLICT function)`,
      `${tsmCommand(env, 'migrate up --dry-run')} prints its SQL without changing anything`,
    ]),
};
