/**
 * SessionStore as applications configure and call it:
 * - libpq parity: `connectionString` (and the environment the store is given) is resolved the way
 *   the CLI and psql resolve it: a pg_service.conf service, keyword/value strings, sslmode; a bad
 *   string is one clear error when the store is built; pgConfig() for a pool of the application's own;
 * - integer user ids (Telethon's `me.id`): safe integers and bigints stored as decimal text,
 *   fractions and unsafe numbers refused before the database is touched;
 * - the planted-operator attack (issue 8) on the statement path and on test-write/bench's own
 *   queries: a `=(varchar, varchar)` planted in public by a role that may create there never runs
 *   as the application or as tsm (on main the statement path compared `t.tenant_id = EXCLUDED.tenant_id`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pgConfig, resolvePg, SessionStore, type SaveFailure } from '../src/index.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase, serverUrl, type TestRole } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public'));

const stores: SessionStore[] = [];
after(() => Promise.all(stores.map((s) => s.close())));
const keep = (s: SessionStore): SessionStore => (stores.push(s), s);

const dir = mkdtempSync(join(tmpdir(), 'tsm-store-lib-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('connectionString resolved like libpq', () => {
  const server = new URL(serverUrl());
  const host = server.hostname === 'localhost' ? '127.0.0.1' : server.hostname;
  const port = server.port || '5432';
  const user = decodeURIComponent(server.username || 'postgres');
  const password = decodeURIComponent(server.password);
  const serviceFile = join(dir, 'pg_service.conf');
  writeFileSync(
    serviceFile,
    `[tsmtest]\nhost=${host}\nport=${port}\ndbname=${db.name}\nuser=${user}\n${password ? `password=${password}\n` : ''}sslmode=disable\n`,
  );

  async function savesThrough(s: SessionStore, userId: string): Promise<void> {
    const r = await s.save({ tenantId: 'svc', userId, sessionStringEnc: 'abc', keyId: 'k' });
    assert.ok(r.ok, JSON.stringify(r));
    const n = await db.sql('SELECT count(*)::int AS n FROM telegram_sessions WHERE user_id = $1', [userId]);
    assert.equal(n.rows[0].n, 1);
  }

  it('a service from pg_service.conf, named by PGSERVICE or by service= in the string (pg alone ignores both)', async () => {
    await savesThrough(keep(new SessionStore({ env: { PGSERVICEFILE: serviceFile, PGSERVICE: 'tsmtest' }, metrics: false })), 'svc-env');
    await savesThrough(keep(new SessionStore({ connectionString: 'service=tsmtest', env: { PGSERVICEFILE: serviceFile }, metrics: false })), 'svc-kv');
    await savesThrough(keep(new SessionStore({ connectionString: 'postgres:///?service=tsmtest', env: { PGSERVICEFILE: serviceFile }, metrics: false })), 'svc-url');
  });

  it('keyword/value strings, and the password from a password file', async () => {
    const pass = join(dir, 'pgpass');
    writeFileSync(pass, `${host}:${port}:${db.name}:${user}:${password || 'unused'}\n`, { mode: 0o600 });
    const s = keep(new SessionStore({ connectionString: `host=${host} port=${port} dbname=${db.name} user=${user} sslmode=disable`, env: { PGPASSFILE: pass }, metrics: false }));
    await savesThrough(s, 'kv-1');
  });

  it('a malformed string is one clear error when the store is built', () => {
    assert.throws(() => new SessionStore({ connectionString: 'mysql://x@h/db' }), /connectionString must start with postgres:\/\/ or postgresql:\/\//);
    assert.throws(() => new SessionStore({ connectionString: 'postgres://x@h/db?nonsense=1' }), /unknown connection parameter 'nonsense'/);
    assert.throws(() => new SessionStore({ connectionString: 'service=nope', env: { PGSERVICEFILE: serviceFile } }), /service "nope" not found/);
  });

  it("pgConfig()/resolvePg() for the application's own pool, with the same resolution", async () => {
    const t = resolvePg('service=tsmtest', { env: { PGSERVICEFILE: serviceFile } });
    assert.equal(t.params.dbname, db.name);
    assert.ok(!t.display.includes(password || '\u0000'), 'display never shows the password');
    const pool = new pg.Pool({ ...pgConfig('service=tsmtest', { env: { PGSERVICEFILE: serviceFile } }), max: 2 });
    pool.on('error', () => {});
    try {
      await savesThrough(new SessionStore({ pool, metrics: false }), 'own-pool-1');
    } finally {
      await pool.end();
    }
  });
});

describe('integer user ids', () => {
  it('safe integers and bigints are stored as their decimal text; the same user as its text form', async () => {
    const s = keep(new SessionStore({ connectionString: db.url, metrics: false }));
    const cases: [number | bigint, string][] = [
      [424242, '424242'],
      [7_000_000_001, '7000000001'],
      [-1001234567890, '-1001234567890'],
      [2n ** 62n, '4611686018427387904'],
    ];
    for (const [userId, text] of cases) {
      const a = await s.save({ tenantId: 'ints', userId, sessionStringEnc: 'first', keyId: 'k' });
      const b = await s.save({ tenantId: 'ints', userId: text, sessionStringEnc: 'second', keyId: 'k' });
      assert.ok(a.ok && b.ok && a.id === b.id, `${text}: ${JSON.stringify([a, b])}`);
      const rows = await db.sql('SELECT user_id, session_string_enc FROM telegram_sessions WHERE tenant_id = $1 AND user_id = $2', ['ints', text]);
      assert.deepEqual(rows.rows, [{ user_id: text, session_string_enc: 'second' }]);
    }
  });

  it('fractions and unsafe numbers: missing_required_field before the database, saying what to pass', async () => {
    const s = keep(new SessionStore({ connectionString: db.url, metrics: false }));
    const unsafe = (await s.save({ tenantId: 'ints', userId: 2 ** 53 + 2, sessionStringEnc: 'x', keyId: 'k' })) as SaveFailure;
    assert.deepEqual([unsafe.ok, unsafe.code, unsafe.attempts], [false, 'missing_required_field', 0]);
    assert.match(unsafe.details, /beyond Number.MAX_SAFE_INTEGER .*pass it as a bigint or a string/);
    const fraction = (await s.save({ tenantId: 'ints', userId: 42.5, sessionStringEnc: 'x', keyId: 'k' })) as SaveFailure;
    assert.match(fraction.details, /userId must be an integer, got 42.5/);
  });
});

describe('a =(varchar, varchar) operator planted in public', () => {
  let app: TestRole;
  const planted = async (): Promise<number> => (await db.sql('SELECT count(*)::int AS n FROM public.planted_log')).rows[0].n;

  before(async () => {
    app = await db.role('tsm_lib_app');
    const mallory = await db.role('tsm_lib_mallory');
    await db.sql(`GRANT SELECT, INSERT, UPDATE, DELETE ON telegram_sessions TO "${app.name}";
      CREATE TABLE public.planted_log (who text, at timestamptz DEFAULT clock_timestamp());
      GRANT INSERT ON public.planted_log TO PUBLIC;
      GRANT CREATE ON SCHEMA public TO "${mallory.name}"`);
    const m = new pg.Client({ connectionString: mallory.url });
    await m.connect();
    try {
      await m.query(`CREATE FUNCTION public.planted_eq(a varchar, b varchar) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO public.planted_log (who) VALUES (current_user);
          RETURN a::text OPERATOR(pg_catalog.=) b::text;
        END $$`);
      await m.query('CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.planted_eq)');
    } finally {
      await m.end();
    }
  });

  it('control: the statement as main sent it (a plain `=`) runs the planted operator as the application', async () => {
    const c = new pg.Client({ connectionString: app.url });
    await c.connect();
    try {
      for (const s of ['a', 'b']) {
        await c.query(
          `INSERT INTO public.telegram_sessions AS t (tenant_id, user_id, session_string_enc, key_id, status) VALUES ('t', 'control-1', $1, 'k', 'pending')
           ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE SET session_string_enc = EXCLUDED.session_string_enc
           WHERE t.tenant_id = EXCLUDED.tenant_id RETURNING id`,
          [s],
        );
      }
    } finally {
      await c.end();
    }
    assert.ok((await planted()) > 0, 'the planted operator ran');
    await db.sql('TRUNCATE public.planted_log');
  });

  it("SessionStore via statement: two saves of a user (the ON CONFLICT path), the other tenant's refusal — never the planted operator", async () => {
    const s = keep(new SessionStore({ connectionString: app.url, via: 'statement', metrics: false }));
    for (const session of ['first', 'second']) {
      const r = await s.save({ tenantId: 't', userId: 'victim-1', sessionStringEnc: session, keyId: 'k' });
      assert.ok(r.ok, JSON.stringify(r));
    }
    const other = await s.save({ tenantId: 'other', userId: 'victim-1', sessionStringEnc: 'stolen', keyId: 'k' });
    assert.deepEqual([other.ok, !other.ok && other.code], [false, 'tenant_mismatch']);
    assert.equal(await planted(), 0);
  });

  it("test-write and bench as that role (both paths): tsm's own queries never run it either", async () => {
    for (const via of ['statement', 'function']) {
      const r = await runTsm(['test-write', '-d', app.url, '--via', via, '--lengths', '68', '--rounds', '2']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    const b = await runTsm(['bench', '-d', app.url, '--via', 'statement', '--duration', '300ms', '--users', '20']);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    assert.equal(await planted(), 0);
  });
});
