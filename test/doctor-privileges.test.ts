/**
 * tsm doctor run as restricted roles (issue 2, test 9): what the role may do decides `privileges`,
 * and doctor itself needs nothing but catalog access and never writes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { allOkExcept, doctor, remedySql } from './helpers/doctor.js';
import { fixedSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));
const FN = 'public.upsert_telegram_session(varchar, varchar, text, varchar, varchar, text, text)';

describe('tsm doctor: privileges', () => {
  it('a role with every privilege (EXECUTE through PUBLIC) is ok', async () => {
    const role = await db.role('tsm_doc_full');
    await db.sql(`GRANT SELECT, INSERT, UPDATE ON public.telegram_sessions TO "${role.name}"`);
    const r = await doctor(role.url);
    assert.equal(r.code, 0);
    assert.deepEqual(r.statuses, allOkExcept({ migrations: 'skipped' }));
    assert.equal(r.check('privileges').detail, `role ${role.name}: SELECT, INSERT, UPDATE, EXECUTE on upsert_telegram_session`);
  });

  it('a role with no privilege on the table: privileges fails; doctor still reads the catalog', async () => {
    const role = await db.role('tsm_doc_none');
    const r = await doctor(role.url);
    assert.equal(r.code, 1);
    const p = r.check('privileges');
    assert.equal(p.status, 'fail');
    assert.match(p.detail, new RegExp(`^role ${role.name} lacks SELECT, INSERT, UPDATE on telegram_sessions`));
    // The catalog checks ran; the scan and the planner probe could not, and say why.
    assert.equal(r.check('index.user-id-unique').status, 'ok');
    assert.equal(r.check('function.upsert').status, 'ok');
    assert.equal(r.check('data.null-user-id').status, 'skipped');
    assert.match(r.check('data.null-user-id').detail, /permission denied.*\(see privileges\)/);
    assert.equal(r.check('index.on-conflict').status, 'skipped');
    assert.match(r.check('index.on-conflict').detail, /see privileges/);
  });

  it('9. a role without INSERT and EXECUTE: privileges fails, and its remedy SQL fixes it', async () => {
    const role = await db.role('tsm_doc_noins');
    await db.sql(`GRANT SELECT, UPDATE ON public.telegram_sessions TO "${role.name}"`);
    // PostgreSQL grants EXECUTE on new functions to PUBLIC: without this revoke every role has it.
    await db.sql(`REVOKE EXECUTE ON FUNCTION ${FN} FROM PUBLIC`);
    try {
      const r = await doctor(role.url);
      assert.equal(r.code, 1);
      const p = r.check('privileges');
      assert.equal(p.status, 'fail');
      assert.equal(
        p.detail,
        `role ${role.name} lacks INSERT on telegram_sessions; EXECUTE on upsert_telegram_session(` +
          'character varying, character varying, text, character varying, character varying, text, text)',
      );
      assert.equal(r.check('index.on-conflict').status, 'skipped', 'EXPLAIN INSERT needs INSERT');
      assert.deepEqual(remedySql(p.remedy), [
        `GRANT INSERT ON "public"."telegram_sessions" TO "${role.name}";`,
        `GRANT EXECUTE ON FUNCTION "public"."upsert_telegram_session"(character varying, character varying, text, character varying, character varying, text, text) TO "${role.name}";`,
      ]);

      // The remedy is copy-paste SQL: run it, and the role is fine.
      for (const sql of remedySql(p.remedy)) await db.sql(sql);
      const fixed = await doctor(role.url);
      assert.equal(fixed.code, 0);
      assert.deepEqual(fixed.statuses, allOkExcept({ migrations: 'skipped' }));
    } finally {
      await db.sql(`GRANT EXECUTE ON FUNCTION ${FN} TO PUBLIC`);
    }
  });

  it('doctor never writes: a role whose transactions are all read-only gets every schema check ok, and server.writable fails', async () => {
    const role = await db.role('tsm_doc_ro');
    await db.sql(`GRANT SELECT, INSERT, UPDATE ON public.telegram_sessions TO "${role.name}"`);
    await db.sql(`ALTER ROLE "${role.name}" SET default_transaction_read_only = on`);
    await db.sql(`INSERT INTO public.telegram_sessions (tenant_id, user_id) VALUES ('t', 'ro-1')`);
    const r = await doctor(role.url);
    // Every check ran (all read-only); the one problem is the role's: every save it makes fails with 25006.
    assert.equal(r.code, 1);
    assert.deepEqual(r.statuses, allOkExcept({ migrations: 'skipped', 'server.writable': 'fail' }));
    const n = await db.sql(`SELECT count(*)::int AS n FROM public.telegram_sessions`);
    assert.equal(n.rows[0].n, 1);
  });
});
