/**
 * Role-level timeouts and tsm migrate (issue 10). Production roles often carry
 * `statement_timeout`, `idle_in_transaction_session_timeout` and `lock_timeout`. They must not
 * break a migration: tsm sets what its work needs inside its own transactions (SET LOCAL) and, for
 * the statements that run outside one, on the session for just as long (then RESET). When a
 * timeout does fire, the message names it and where its value came from.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { adoptMarks, isConcurrentIndexStatement } from '../src/migrate/session.js';
import { sourceWords, timeoutName } from '../src/migrate/timeouts.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, indexesOf, lastLine, migrate, qi } from './helpers/migrate.js';
import { settle } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

/** A role that owns <schema>.telegram_sessions (the pre-fix table with `rows` rows) and carries `settings`. */
async function ownerWith(schema: string, rows: number, settings: Record<string, string>): Promise<{ name: string; url: string }> {
  const role = await db.role('tsm_to');
  await db.sql(preFixSchema(schema));
  await db.sql(
    `INSERT INTO ${qi(schema)}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
     SELECT 't-1', 'u-' || g, md5(g::text), 'k1', 'active' FROM generate_series(1, $1::int) g`,
    [rows],
  );
  await db.sql(`ANALYZE ${qi(schema)}.telegram_sessions`);
  await db.sql(`ALTER SCHEMA ${qi(schema)} OWNER TO ${qi(role.name)}`);
  await db.sql(`ALTER TABLE ${qi(schema)}.telegram_sessions OWNER TO ${qi(role.name)}`);
  for (const [k, v] of Object.entries(settings)) await db.sql(`ALTER ROLE ${qi(role.name)} SET ${k} = '${v}'`);
  return role;
}

async function asRole<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

describe('tsm migrate under role-level timeouts', () => {
  it('statement_timeout 100ms, idle_in_transaction_session_timeout 100ms, lock_timeout 1ms on the role: up and down still work', async () => {
    const role = await ownerWith('slow', 400_000, { statement_timeout: '100ms', idle_in_transaction_session_timeout: '100ms', lock_timeout: '1ms' });
    // The premise: under the role's own settings the duplicate check (and so the index build) is cut off.
    const premise = await asRole(role.url, (c) =>
      settle(c.query(`SELECT count(*) FROM (SELECT user_id FROM slow.telegram_sessions GROUP BY user_id HAVING count(*) > 1) d`)),
    );
    assert.equal(premise.ok, false, 'the duplicate check finished within the role statement_timeout: make the table bigger');
    assert.equal((premise as { error: { code?: string } }).error.code, '57014');

    const up = await migrate(role.url, ['up', '--schema', 'slow', '--json'], { timeoutMs: 120_000 });
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(await history(db, 'slow'), SHIPPED);
    const idx = (await indexesOf(db, 'slow')).find((i) => i.name === 'telegram_sessions_user_id_unique');
    assert.equal(idx?.valid, true);

    const down = await migrate(role.url, ['down', '2', '--schema', 'slow']);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await history(db, 'slow'), SHIPPED.slice(0, 4));
    // Nothing of tsm's settings is visible to the role's next session: its own settings apply.
    const shown = await asRole(role.url, async (c) => (await c.query(`SELECT current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l`)).rows[0]);
    assert.deepEqual(shown, { s: '100ms', l: '1ms' });
  });

  it('a statement_timeout that fires is named, with where its value came from', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsm-timeouts-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    // A team's migration that sets its own statement_timeout, then runs longer than it.
    writeFileSync(
      join(dir, '0001_slow_backfill.js'),
      `export async function up(pgm) { pgm.sql("SET LOCAL statement_timeout = '300ms'"); pgm.sql('SELECT pg_sleep(3)'); }\nexport async function down() {}\n`,
    );
    const r = await migrate(db.url, ['up', '--schema', 'backfill', '--migrations-dir', dir]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(lastLine(r.stderr), /^tsm: 0001_slow_backfill failed: statement_timeout set inside the migration, or a cancel from another session \(tsm runs migrations with statement_timeout = 0\): .*\(SQLSTATE 57014\); nothing was applied$/);
  });

  it('a lock_timeout that fires is named with the option that set it', async () => {
    await db.sql(preFixSchema('named'));
    const blocker = await db.client();
    await blocker.query('BEGIN; LOCK TABLE named.telegram_sessions IN ACCESS SHARE MODE');
    try {
      const r = await migrate(db.url, ['up', '--schema', 'named', '--lock-timeout', '100ms', '--lock-retries', '2']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(lastLine(r.stderr), /^tsm: 0003_diagnostic_columns failed: .*lock_timeout \(--lock-timeout 100ms\)/);
    } finally {
      await blocker.query('ROLLBACK');
    }
  });
});

describe('how a timeout is named (by SQLSTATE, with the source of its value)', () => {
  const server = {
    lock_timeout: { value: '1ms', source: 'user' },
    statement_timeout: { value: '200ms', source: 'user' },
    idle_in_transaction_session_timeout: { value: '100ms', source: 'database' },
  };
  const err = (code: string, extra: Record<string, unknown> = {}): Error => Object.assign(new Error('canceling statement'), { code, ...extra });
  const ctx = { lockTimeoutMs: 500, server, underTsm: false, cancelledByTsm: false };

  it('names the timeout and where its value came from', () => {
    assert.equal(timeoutName(err('57014'), ctx), 'statement_timeout (role setting 200ms)');
    assert.equal(timeoutName(err('25P03'), ctx), 'idle_in_transaction_session_timeout (database setting 100ms)');
    assert.equal(timeoutName(err('55P03'), ctx), 'lock_timeout (role setting 1ms)');
    assert.equal(timeoutName(err('55P03'), { ...ctx, underTsm: true }), 'lock_timeout (--lock-timeout 500ms)');
    assert.equal(timeoutName(err('55P03', { tsmConcurrent: true, tsmLockTimeoutMs: 120_000 }), { ...ctx, underTsm: true }), 'lock_timeout (--index-lock-timeout 120s)');
    assert.equal(timeoutName(err('57014'), { ...ctx, cancelledByTsm: true }), 'cancelled by tsm (Ctrl-C)');
    assert.equal(timeoutName(err('42501'), ctx), null);
    assert.equal(sourceWords('configuration file'), 'server setting');
    assert.equal(sourceWords('database user'), 'role setting in this database');
  });
});

describe('which statements get --index-lock-timeout', () => {
  it('CONCURRENTLY as the option of CREATE/DROP INDEX and REINDEX only, never a name that spells it', () => {
    for (const yes of [
      'CREATE UNIQUE INDEX CONCURRENTLY "i" ON "s".t (user_id)',
      '  create index concurrently if not exists i on t (a)',
      'DROP INDEX CONCURRENTLY IF EXISTS "s"."i"',
      'REINDEX INDEX CONCURRENTLY "s"."i"',
      'REINDEX (VERBOSE) TABLE CONCURRENTLY t',
    ]) assert.equal(isConcurrentIndexStatement(yes), true, yes);
    for (const no of [
      // A blocking statement on a schema or index named "concurrently" must keep the short --lock-timeout.
      'DROP INDEX IF EXISTS "concurrently"."telegram_sessions_user_id_unique"',
      'DROP INDEX IF EXISTS "s".concurrently',
      'CREATE UNIQUE INDEX "concurrently" ON ONLY "s"."telegram_sessions" (user_id)',
      'CREATE UNIQUE INDEX i ON "concurrently".telegram_sessions (user_id)',
      'ALTER INDEX "s"."p" ATTACH PARTITION "concurrently"."i"',
      'REINDEX INDEX "concurrently"',
    ]) assert.equal(isConcurrentIndexStatement(no), false, no);
  });

  it("tsm's marks on a statement's error survive a migration wrapping it (0004 names its step)", () => {
    const inner = Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03', tsmConcurrent: true, tsmLockTimeoutMs: 1000, tsmUnderTsm: true });
    const outer = Object.assign(new Error('step 4 of 9 (build i on p1): canceling statement due to lock timeout', { cause: new Error('x', { cause: inner }) }), { code: '55P03' });
    adoptMarks(outer);
    assert.deepEqual([(outer as { tsmConcurrent?: boolean }).tsmConcurrent, (outer as { tsmLockTimeoutMs?: number }).tsmLockTimeoutMs], [true, 1000]);
    const ctx = { lockTimeoutMs: 500, server: null, underTsm: true, cancelledByTsm: false };
    assert.equal(timeoutName(outer, ctx), 'lock_timeout (--index-lock-timeout 1s)');
  });
});
