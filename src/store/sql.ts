/**
 * The two ways a session is written (`via`):
 * - `function`: `SELECT <schema>.upsert_telegram_session($1 … $7)`, the fixed schema's function;
 * - `statement`: the `INSERT … ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE` that
 *   applications send directly. It never moves a row to another tenant: the update is guarded by
 *   `WHERE t.tenant_id OPERATOR(pg_catalog.=) EXCLUDED.tenant_id`, and no row back means
 *   tenant_mismatch. The operator and now() are named with their schema: the statement runs with
 *   the caller's search_path, where a schema others can create in may come first, and a plain `=`
 *   on two varchars would pick a planted `=(varchar, varchar)` over pg_catalog's `=(text, text)`.
 *
 * The statement writes auth_error / error_details only when the caller gives them (null clears
 * them). That is the application's statement as it was before the fix, which is what makes it
 * fail on the incident's schema with 42P10 (no unique index) rather than 42703 (no auth_error).
 */
import { createHash } from 'node:crypto';
import { qualify } from '../db/ident.js';

import type { Via } from './via.js';

export { VIAS, type Via } from './via.js';

export interface UpsertRow {
  tenantId: string;
  userId: string;
  sessionStringEnc: string;
  keyId: string | null;
  status: string;
  /** undefined: not written by `statement` (the function sets NULL); null: cleared. */
  authError?: string | null;
  errorDetails?: string | null;
}

export interface UpsertQuery {
  /** Prepared-statement name (per schema and shape); the store decides whether to use it. */
  name: string;
  text: string;
  values: unknown[];
}

const texts = new Map<string, { name: string; text: string }>();

function cached(key: string, build: () => string): { name: string; text: string } {
  let hit = texts.get(key);
  if (!hit) {
    const text = build();
    const digest = createHash('sha256').update(text).digest('hex').slice(0, 16);
    hit = { name: `tsm_upsert_${digest}`, text };
    texts.set(key, hit);
  }
  return hit;
}

export function functionSql(schema: string): string {
  return (
    `SELECT ${qualify(schema, 'upsert_telegram_session')}` +
    `($1::varchar, $2::varchar, $3::text, $4::varchar, $5::varchar, $6::text, $7::text) AS id`
  );
}

export function statementSql(schema: string, withDiagnostics: boolean): string {
  const cols = ['tenant_id', 'user_id', 'session_string_enc', 'key_id', 'status'];
  if (withDiagnostics) cols.push('auth_error', 'error_details');
  const updated = cols.filter((c) => c !== 'tenant_id' && c !== 'user_id');
  return [
    `INSERT INTO ${qualify(schema, 'telegram_sessions')} AS t (${cols.join(', ')})`,
    `VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`,
    `ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE`,
    `SET ${updated.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}, updated_at = pg_catalog.now()`,
    `WHERE t.tenant_id OPERATOR(pg_catalog.=) EXCLUDED.tenant_id`,
    `RETURNING id`,
  ].join('\n');
}

/** A statement's prepared-statement name (per schema and shape) and text. */
export interface UpsertStatement {
  name: string;
  text: string;
}

/** The statements one store sends: worked out once per store, not per save. */
export interface UpsertStatements {
  /** `function`: the call; `statement`: the INSERT without auth_error / error_details. */
  plain: UpsertStatement;
  /** `statement` only: the INSERT that also writes auth_error / error_details. */
  diagnostics: UpsertStatement;
}

export function upsertStatements(schema: string, via: Via): UpsertStatements {
  if (via === 'function') {
    const f = cached('f' + schema, () => functionSql(schema));
    return { plain: f, diagnostics: f };
  }
  return { plain: cached('s' + schema, () => statementSql(schema, false)), diagnostics: cached('d' + schema, () => statementSql(schema, true)) };
}

/** The statement and the parameters for one row (the function takes all seven). */
export function upsertQuery(statements: UpsertStatements, via: Via, row: UpsertRow): UpsertQuery {
  const diag = row.authError !== undefined || row.errorDetails !== undefined;
  if (via === 'statement' && !diag) {
    const s = statements.plain;
    return { name: s.name, text: s.text, values: [row.tenantId, row.userId, row.sessionStringEnc, row.keyId, row.status] };
  }
  const s = via === 'function' ? statements.plain : statements.diagnostics;
  return {
    name: s.name,
    text: s.text,
    values: [row.tenantId, row.userId, row.sessionStringEnc, row.keyId, row.status, row.authError ?? null, row.errorDetails ?? null],
  };
}
