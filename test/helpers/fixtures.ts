/**
 * The schema states tests build by hand, written as plain SQL so a test never depends on the
 * code under test to set itself up. `s` is the (quoted) schema, e.g. "public".
 */
/** A name as a quoted SQL identifier (the tests' own, independent of tsm's `ident`). */
export const q = (name: string): string => '"' + name.replace(/"/g, '""') + '"';

/**
 * The pre-fix table's columns without a primary key: a partitioned table's unique keys must
 * contain its partition key, so partitioned tests add their own `PRIMARY KEY (…)` or none.
 */
export const PRE_FIX_COLUMNS = `
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id          varchar(255) NOT NULL,
  user_id            varchar(255),
  session_string_enc text,
  key_id             varchar(64),
  status             varchar(20) NOT NULL DEFAULT 'pending',
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()`;

/** The fixed table's columns (the pre-fix ones plus the diagnostic columns), without a primary key. */
export const FIXED_COLUMNS = `
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  tenant_id          varchar(255) NOT NULL,
  user_id            varchar(255),
  session_string_enc text,
  key_id             varchar(64),
  status             varchar(20) NOT NULL DEFAULT 'pending',
  auth_error         text,
  error_details      text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()`;

/** The incident's pre-fix table: TEXT session column, no unique index, no diagnostic columns, no function. */
export function preFixSchema(schema = 'public'): string {
  const s = q(schema);
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE ${s}.telegram_sessions (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id          varchar(255) NOT NULL,
  user_id            varchar(255),
  session_string_enc text,
  key_id             varchar(64),
  status             varchar(20) NOT NULL DEFAULT 'pending',
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);`;
}

/**
 * The race-free upsert function of the fixed schema, written by hand: the behaviour tsm's
 * migrations install, hardened the way doctor expects (SECURITY INVOKER, search_path pinned to
 * pg_catalog, pg_temp, the table qualified). `=` needs no OPERATOR() here: with that search_path
 * only pg_catalog's operators are visible. (tsm's 0006 qualifies them all the same.)
 */
export function fixedFunction(schema = 'public'): string {
  const s = q(schema);
  return `
CREATE OR REPLACE FUNCTION ${s}.upsert_telegram_session(
  p_tenant_id varchar, p_user_id varchar, p_session_string_enc text, p_key_id varchar,
  p_status varchar DEFAULT 'pending', p_auth_error text DEFAULT NULL, p_error_details text DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE v_id uuid;
BEGIN
  IF p_user_id IS NULL THEN
    RAISE EXCEPTION 'p_user_id must not be NULL' USING ERRCODE = 'not_null_violation';
  END IF;
  INSERT INTO ${s}.telegram_sessions AS t
    (tenant_id, user_id, session_string_enc, key_id, status, auth_error, error_details)
  VALUES (p_tenant_id, p_user_id, p_session_string_enc, p_key_id, COALESCE(p_status, 'pending'), p_auth_error, p_error_details)
  ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE
    SET session_string_enc = EXCLUDED.session_string_enc, key_id = EXCLUDED.key_id, status = EXCLUDED.status,
        auth_error = EXCLUDED.auth_error, error_details = EXCLUDED.error_details, updated_at = now()
    WHERE t.tenant_id = EXCLUDED.tenant_id
  RETURNING id INTO v_id;
  IF v_id IS NULL THEN
    RAISE EXCEPTION 'user_id % belongs to another tenant', p_user_id USING ERRCODE = 'TSM01';
  END IF;
  RETURN v_id;
END
$fn$;`;
}

/** The fully fixed schema, written by hand. */
export function fixedSchema(schema = 'public'): string {
  const s = q(schema);
  return `${preFixSchema(schema)}
ALTER TABLE ${s}.telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text;
CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON ${s}.telegram_sessions (user_id) WHERE user_id IS NOT NULL;
${fixedFunction(schema)}`;
}

/**
 * The incident write-up's UPDATE-then-INSERT function (racy: two first saves both INSERT).
 * `windowMs` widens its race window (a pause between the UPDATE that found nothing and the
 * INSERT) so a test that must see the race does not depend on the scheduler of a loaded machine;
 * 0 is the incident's function exactly.
 */
export function incidentRacyFunction(schema = 'public', opts: { windowMs?: number } = {}): string {
  const s = q(schema);
  const pause = opts.windowMs ? `PERFORM pg_sleep(${opts.windowMs / 1000});` : '';
  return `
CREATE OR REPLACE FUNCTION ${s}.upsert_telegram_session(
    p_tenant_id VARCHAR(255), p_user_id VARCHAR(255), p_session_string_enc TEXT, p_key_id VARCHAR(64),
    p_status VARCHAR(20) DEFAULT 'pending', p_auth_error TEXT DEFAULT NULL, p_error_details TEXT DEFAULT NULL
) RETURNS UUID AS $$
DECLARE
    session_id UUID;
BEGIN
    UPDATE ${s}.telegram_sessions
    SET session_string_enc = p_session_string_enc, key_id = p_key_id, status = p_status,
        auth_error = p_auth_error, error_details = p_error_details, updated_at = now()
    WHERE user_id = p_user_id
    RETURNING id INTO session_id;
    IF session_id IS NULL THEN
        ${pause}
        INSERT INTO ${s}.telegram_sessions (
            tenant_id, user_id, session_string_enc, key_id, status, auth_error, error_details
        ) VALUES (
            p_tenant_id, p_user_id, p_session_string_enc, p_key_id, p_status, p_auth_error, p_error_details
        ) RETURNING id INTO session_id;
    END IF;
    RETURN session_id;
END;
$$ LANGUAGE plpgsql;`;
}
