/**
 * test-write's per-length check (the design's four steps), through SessionStore:
 * 1. a session string of exactly L base64 characters;
 * 2. save it for a fresh test user (insert path) → an id;
 * 3. save a different string of length L for the same user (update path) → the same id;
 * 4. read it back on another connection → byte-identical, exactly one row for the user,
 *    key_id and status stored, updated_at moved forward.
 */
import type { ClientBase } from 'pg';
import { qualify } from '../../../db/ident.js';
import { makeDifferentSessionString, makeSessionString, shortHash } from '../../../store/session-string.js';
import type { SaveResult, SessionStore } from '../../../store/store.js';
import { ownWork, type TestRows } from '../../test-rows.js';

export type StepStatus = 'ok' | 'fail' | 'skipped';

export interface LengthResult {
  length: number;
  insert: StepStatus;
  update: StepStatus;
  readback: StepStatus;
  ms: number;
  ok: boolean;
  /** The classified error code, or a test-write check code (duplicate_rows, readback_mismatch, …). */
  code?: string;
  sqlstate?: string | null;
  /** One line for humans; never contains a session string. */
  detail?: string;
}

export const KEY_INSERT = 'tsm-test-key-1';
export const KEY_UPDATE = 'tsm-test-key-2';

export async function checkLength(
  L: number,
  ctx: { store: SessionStore; admin: ClientBase; rows: TestRows; signal: AbortSignal },
): Promise<LengthResult> {
  const { store, admin, rows, signal } = ctx;
  const t0 = performance.now();
  const res: LengthResult = { length: L, insert: 'skipped', update: 'skipped', readback: 'skipped', ms: 0, ok: false };
  const done = (code?: string, detail?: string, sqlstate?: string | null): LengthResult => {
    res.ms = Math.round(performance.now() - t0);
    res.ok = code === undefined;
    if (code !== undefined) {
      res.code = code;
      if (sqlstate !== undefined) res.sqlstate = sqlstate;
      if (detail !== undefined) res.detail = detail;
    }
    return res;
  };
  const failed = (r: SaveResult & { ok: false }): LengthResult => done(r.code, r.details, r.sqlstate);

  const table = qualify(rows.schema, 'telegram_sessions');
  const userId = rows.next();
  const first = makeSessionString(L);
  const r1 = await store.save({ tenantId: rows.tenant, userId, sessionStringEnc: first, keyId: KEY_INSERT, status: 'pending' }, { signal });
  if (!r1.ok) {
    res.insert = 'fail';
    return failed(r1);
  }
  res.insert = 'ok';
  // tsm's own reads run with tsm's own timeouts (a role's short statement_timeout is for the writes under test).
  const before = await ownWork(admin, () => admin.query<{ u: string }>(`SELECT updated_at::text AS u FROM ${table} WHERE user_id OPERATOR(pg_catalog.=) $1 LIMIT 1`, [userId]));
  const insertedAt = before.rows[0]?.u ?? null;

  const second = makeDifferentSessionString(first);
  const r2 = await store.save({ tenantId: rows.tenant, userId, sessionStringEnc: second, keyId: KEY_UPDATE, status: 'authorized' }, { signal });
  if (!r2.ok) {
    res.update = 'fail';
    return failed(r2);
  }
  if (r2.id !== r1.id) {
    res.update = 'fail';
    return done('id_changed', `the insert returned id ${r1.id}, the update ${r2.id}`);
  }
  res.update = 'ok';

  const back = await ownWork(admin, () => admin.query<{
    n: number;
    id: string;
    tenant_id: string;
    session_string_enc: string | null;
    key_id: string | null;
    status: string;
    moved: boolean | null;
  }>(
    `SELECT count(*) OVER ()::int AS n, id, tenant_id, session_string_enc, key_id, status,
            updated_at > $2::timestamptz AS moved
       FROM ${table} WHERE user_id OPERATOR(pg_catalog.=) $1`,
    [userId, insertedAt],
  ));
  res.readback = 'fail';
  const row = back.rows[0];
  if (!row) return done('row_missing', 'no row for the test user after two successful saves');
  if (row.n !== 1) return done('duplicate_rows', `${row.n} rows for one user id after an insert and an update`);
  const got = row.session_string_enc;
  if (got !== second) {
    const what = got === null ? 'NULL' : `${got.length} characters (sha256 ${shortHash(got)})`;
    return done('readback_mismatch', `read back ${what}, saved ${L} characters (sha256 ${shortHash(second)})`);
  }
  if (row.id !== r1.id || row.tenant_id !== rows.tenant) return done('readback_mismatch', 'the row has another id or tenant than the one saved');
  if (row.key_id !== KEY_UPDATE || row.status !== 'authorized') {
    return done('readback_mismatch', `key_id/status read back as ${row.key_id}/${row.status}, saved ${KEY_UPDATE}/authorized`);
  }
  if (row.moved !== true) return done('updated_at_not_moved', 'updated_at did not move forward on the update');
  res.readback = 'ok';
  return done();
}
