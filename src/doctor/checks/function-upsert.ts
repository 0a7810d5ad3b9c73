import type { CatalogCheck, Outcome } from '../types.js';
import { FUNCTION, plural, remedyText } from '../util.js';
import { tsmCommand } from '../../report/shell.js';

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

/**
 * `sql` without its comments (`--` to the end of the line, nested block comments), leaving
 * string literals, quoted identifiers and dollar-quoted strings whole: a schema or table named
 * `a -- b` inside the body does not hide the rest of its line.
 */
export function withoutComments(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    const n = sql[i + 1];
    if (c === '-' && n === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end;
      out += ' ';
    } else if (c === '/' && n === '*') {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        const pair = sql.slice(i, i + 2);
        if (pair === '/*') depth++;
        else if (pair === '*/') depth--;
        i += pair === '/*' || pair === '*/' ? 2 : 1;
      }
      out += ' ';
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < sql.length && !(sql[j] === c && sql[j + 1] !== c)) j += sql[j] === c ? 2 : 1;
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else {
      const tag = c === '$' ? /^\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$/.exec(sql.slice(i))?.[0] : undefined;
      if (tag !== undefined) {
        const end = sql.indexOf(tag, i + tag.length);
        const stop = end < 0 ? sql.length : end + tag.length;
        out += sql.slice(i, stop);
        i = stop;
      } else {
        out += c;
        i++;
      }
    }
  }
  return out;
}

/** What the body does, judged from its text (comments removed). */
export function judgeBody(rawBody: string): Outcome {
  const body = withoutComments(rawBody);
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

/** One row per function named upsert_telegram_session in the schema (every overload). */
export interface FunctionRow {
  /** regprocedure text, e.g. public.upsert_telegram_session(character varying, …) */
  signature: string;
  arg_types: string[];
  /** pg_get_function_result: `uuid` */
  returns: string;
  language: string;
  /** prokind: f function, p procedure, a aggregate, w window */
  kind: string;
  security_definer: boolean;
  /** proconfig: `search_path=pg_catalog, pg_temp`, … (null when none) */
  config: string[] | null;
  body: string | null;
}

/** The integer-user-id overload tsm installs (0006): p_user_id bigint, calling the text version. */
export const INTEGER_ARGS = EXPECTED_ARGS.map((t, i) => (i === 1 ? 'bigint' : t));

function hasArgs(r: FunctionRow, expected: string[]): boolean {
  const args = r.arg_types ?? [];
  return args.length === expected.length && args.every((t, i) => t === expected[i]);
}

/** tsm's bigint overload: same shape with p_user_id bigint, returns uuid, and delegates to the function. */
function isIntegerOverload(r: FunctionRow): boolean {
  return hasArgs(r, INTEGER_ARGS) && r.kind === 'f' && r.returns === 'uuid' && /\bupsert_telegram_session"?\s*\(/i.test(withoutComments(String(r.body ?? '')));
}

/**
 * Why a function can be hijacked or misused, or null: SECURITY DEFINER runs it with its owner's
 * rights; without `SET search_path` (to pg_catalog and pg_temp, pg_temp last) the caller's
 * search_path is in force inside it, so an object planted in a schema on that path (a
 * `=(varchar, varchar)` operator in public, say) can run as the caller.
 */
export function hardeningProblems(r: Pick<FunctionRow, 'security_definer' | 'config'>): string[] {
  const problems: string[] = [];
  if (r.security_definer === true) problems.push('SECURITY DEFINER (runs with its owner\'s rights; tsm\'s is SECURITY INVOKER)');
  const config = Array.isArray(r.config) ? r.config.map(String) : [];
  const setting = config.find((c) => c.toLowerCase().startsWith('search_path='));
  if (setting === undefined) {
    problems.push("search_path not pinned (objects in a schema on the caller's search_path can run inside it)");
  } else {
    const path = setting
      .slice('search_path='.length)
      .split(',')
      .map((x) => x.trim().replace(/^"(.*)"$/, '$1'))
      .filter((x) => x !== '');
    const unsafe = path.filter((x) => x !== 'pg_catalog' && x !== 'pg_temp');
    const tempNotLast = path.includes('pg_temp') && path[path.length - 1] !== 'pg_temp';
    if (unsafe.length > 0 || tempNotLast) {
      problems.push(`search_path pinned to ${setting.slice('search_path='.length)}, not pg_catalog, pg_temp (whoever can create objects there can run code inside it)`);
    }
  }
  return problems;
}

const HARDEN_SQL = (signature: string): string =>
  `ALTER FUNCTION ${signature} SECURITY INVOKER SET search_path = pg_catalog, pg_temp;   -- only once every table and operator in its body is schema-qualified`;

export const functionUpsert: CatalogCheck<FunctionRow> = {
  id: 'function.upsert',
  title: 'Race-free upsert function',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table'],
  example: {
    bad: '-- UPDATE … WHERE user_id = p_user_id; IF NOT FOUND THEN INSERT …; END IF;   -- two first saves both INSERT',
    good: '-- INSERT INTO public.telegram_sessions AS t (…) VALUES (…) ON CONFLICT (user_id) WHERE user_id IS NOT NULL\n--   DO UPDATE SET … WHERE t.tenant_id = EXCLUDED.tenant_id RETURNING id;   (SECURITY INVOKER, SET search_path = pg_catalog, pg_temp)',
  },
  looksAt:
    `pg_proc: ${FUNCTION} in the schema, its argument types (varchar, varchar, text, varchar, varchar, ` +
    'text, text), its return type (uuid) and its body: INSERT … ON CONFLICT (user_id) with a tenant_id ' +
    'guard is race-free; an UPDATE-then-INSERT body is not. Also SECURITY DEFINER (prosecdef) and whether ' +
    'search_path is pinned to pg_catalog, pg_temp (proconfig), for the function and for the overload taking ' +
    'p_user_id bigint that tsm adds for integer user ids (it calls the varchar version). Any other overload is reported.',
  why:
    'Applications save sessions through this function. Missing (or with another signature), every call fails ' +
    'with 42883. An UPDATE-then-INSERT body (the incident write-up\'s first fix) races: two concurrent first ' +
    'saves for one user both find nothing to update and both insert. Without a pinned search_path, the ' +
    "caller's search_path is in force inside the function: a role that may create objects in a schema on it " +
    '(public before PostgreSQL 15) can plant an operator that then runs as the application; SECURITY DEFINER ' +
    "would run the body with the owner's rights. Other overloads can make calls that rely on defaults ambiguous (42725).",
  sql: `SELECT p.oid::regprocedure::text                          AS signature,
       array(SELECT pg_catalog.format_type(t.oid, NULL)
               FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(oid, ord)
               JOIN pg_catalog.pg_type t ON t.oid = a.oid
              ORDER BY a.ord)                              AS arg_types,
       pg_catalog.pg_get_function_result(p.oid)            AS returns,
       l.lanname::text                                     AS language,
       p.prokind::text                                     AS kind,
       p.prosecdef                                         AS security_definer,
       p.proconfig::text[]                                 AS config,
       CASE WHEN p.prosrc <> '' THEN p.prosrc
            ELSE pg_catalog.pg_get_functiondef(p.oid) END  AS body
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_language l  ON l.oid = p.prolang
 WHERE n.nspname = $1::text AND p.proname = '${FUNCTION}'
 ORDER BY p.oid`,
  evaluate(rows, env) {
    if (rows.length === 0) return { status: 'fail', detail: `${FUNCTION} does not exist` };
    const match = rows.find((r) => hasArgs(r, EXPECTED_ARGS) && r.kind === 'f');
    if (!match) {
      return {
        status: 'fail',
        detail: `no ${FUNCTION}(varchar, varchar, text, varchar, varchar, text, text); found ${rows.map((r) => r.signature).join(', ')}`,
      };
    }
    if (match.returns !== 'uuid') return { status: 'fail', detail: `returns ${match.returns}, not uuid` };
    const verdict = judgeBody(String(match.body ?? ''));
    const integer = rows.find((r) => r !== match && isIntegerOverload(r));
    const others = rows.filter((r) => r !== match && r !== integer);
    if (others.length > 0 && verdict.status === 'ok') {
      const shown = [match, ...others];
      return {
        status: 'warn',
        detail: `${plural(shown.length, 'overload')}: calls that rely on defaults may be ambiguous (42725); ${shown.map((r) => r.signature).join(', ')}`,
        remedy: remedyText([], others.map((r) => `DROP FUNCTION ${r.signature};   -- after checking nothing calls it`)),
      };
    }
    const unsafe = [match, ...(integer ? [integer] : [])].flatMap((r) => {
      const problems = hardeningProblems(r);
      return problems.length === 0 ? [] : [{ r, problems }];
    });
    if (unsafe.length === 0) return verdict;
    const hardening = unsafe.map((u) => `${u.r === match ? '' : `${u.r.signature}: `}${u.problems.join('; ')}`).join('; ');
    const remedy = remedyText(
      [`${tsmCommand(env.schema, 'migrate up')}   (installs the hardened function: SECURITY INVOKER, search_path pinned, names qualified)`],
      unsafe.map((u) => HARDEN_SQL(String(u.r.signature))),
    );
    if (verdict.status === 'ok') return { status: 'warn', detail: hardening, remedy };
    return { ...verdict, detail: `${verdict.detail}; also ${hardening}` };
  },
  remedy: (env) =>
    remedyText([
      `${tsmCommand(env.schema, 'migrate up')}   (installs the race-free INSERT … ON CONFLICT function)`,
      `${tsmCommand(env.schema, 'migrate up --dry-run')} prints its SQL without changing anything`,
    ]),
};
