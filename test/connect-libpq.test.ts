/**
 * libpq parity beyond TLS, with the real CLI (`tsm doctor`: exit 0/1 = connected, 3 = not):
 * PGSERVICE/PGSERVICEFILE, connect_timeout / PGCONNECT_TIMEOUT / --connect-timeout against a
 * server that never answers, socket URLs on the machine's /var/run/postgresql, $USER unset,
 * and the password file without Node's DeprecationWarning.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runTsm, type RunOptions, type RunResult } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { freePort, MACHINE_SOCKET_DIR, requirePart, runAs, startBlackhole, startServer, type PrivateServer } from './helpers/topology.js';

const db = await createTestDatabase(import.meta.url);
const home = mkdtempSync(join(tmpdir(), 'tsm-libpq-home-'));
after(() => rmSync(home, { recursive: true, force: true }));

const doctor = (args: string[], env: Record<string, string | undefined> = {}, opts: RunOptions = {}): Promise<RunResult> =>
  runTsm(['doctor', '--json', ...args], { timeoutMs: 60_000, ...opts, env: { HOME: home, ...env } });

function connected(r: RunResult): { database: string } {
  assert.ok(r.code === 0 || r.code === 1, `expected a connection (exit 0/1), got ${r.code}: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /warning/i, 'nothing on stderr: no DeprecationWarning, no SECURITY WARNING');
  const doc = r.json<{ database: string; checks: { id: string; status: string }[] }>();
  assert.equal(doc.checks.find((c) => c.id === 'connection')?.status, 'ok');
  return doc;
}

function refused(r: RunResult, pattern: RegExp): void {
  assert.equal(r.code, 3, `expected exit 3, got ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
}

const file = (name: string, text: string, mode = 0o600): string => {
  const p = join(home, name);
  writeFileSync(p, text, { mode });
  return p;
};

describe('on a private server (password authentication)', { skip: requirePart('postgres') }, () => {
  let srv: PrivateServer;
  before(async () => {
    srv = await startServer();
    // A database that exists only there: reaching it proves tsm went to this server.
    await srv.sql('CREATE DATABASE svc_marker');
  });

  it('PGSERVICE with PGSERVICEFILE reaches the service’s server, not localhost:5432', async () => {
    const services = file('pg_service.conf', `[other]\nhost=192.0.2.1\n\n[tsmtest]\nhost=127.0.0.1\nport=${srv.port}\nuser=postgres\ndbname=svc_marker\npassword=${srv.password}\n`);
    const doc = connected(await doctor([], { PGSERVICE: 'tsmtest', PGSERVICEFILE: services }));
    assert.equal(doc.database, `postgres://postgres:***@127.0.0.1:${srv.port}/svc_marker`);
    // service= in DATABASE_URL too; the display names the service's server.
    const viaUrl = connected(await doctor([], { DATABASE_URL: 'postgres:///?service=tsmtest', PGSERVICEFILE: services }));
    assert.equal(viaUrl.database, `postgres://postgres:***@127.0.0.1:${srv.port}/svc_marker`);
    // An unknown service is a configuration error: exit 2, one line.
    const r = await doctor([], { PGSERVICE: 'absent', PGSERVICEFILE: services });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^tsm: service "absent" not found \(looked in .*pg_service\.conf/);
  });

  it('a password from PGPASSFILE or ~/.pgpass, with no DeprecationWarning', async () => {
    const url = `postgres://postgres@127.0.0.1:${srv.port}/postgres`;
    const passfile = file('pgpass', `# tsm test\n127.0.0.1:${srv.port}:*:postgres:${srv.password}\n`);
    connected(await doctor(['-d', url], { PGPASSFILE: passfile }));
    const h = mkdtempSync(join(tmpdir(), 'tsm-libpq-pgpass-'));
    try {
      writeFileSync(join(h, '.pgpass'), `*:*:*:postgres:${srv.password}\n`, { mode: 0o600 });
      connected(await doctor(['-d', url], { HOME: h }));
    } finally {
      rmSync(h, { recursive: true, force: true });
    }
    // A file others can read is ignored (libpq's rule), and the message says so.
    const open = file('pgpass-open', `*:*:*:postgres:${srv.password}\n`, 0o644);
    const r = await doctor(['-d', url], { PGPASSFILE: open });
    refused(r, /password file .*pgpass-open was ignored: it has group or world access/);
    assert.ok(!r.stderr.includes(srv.password), 'the password is never printed');
  });

  it('$USER unset: the OS user name is the default user', async () => {
    const me = userInfo().username;
    const pw = 'pw-' + Math.random().toString(36).slice(2, 10);
    await srv.sql(`DROP ROLE IF EXISTS "${me}"`);
    await srv.sql(`CREATE ROLE "${me}" LOGIN PASSWORD '${pw}'`);
    const env = { USER: undefined, LOGNAME: undefined, PGHOST: '127.0.0.1', PGPORT: String(srv.port), PGDATABASE: 'postgres', PGPASSWORD: pw };
    const doc = connected(await doctor([], env));
    assert.equal(doc.database, `postgres://${me}:***@127.0.0.1:${srv.port}/postgres`);
  });
});

describe('connect timeouts against a server that accepts and never answers', () => {
  it('connect_timeout in the URL, PGCONNECT_TIMEOUT, and --connect-timeout beating both', async () => {
    const hole = await startBlackhole();
    const timed = async (args: string[], env: Record<string, string> = {}): Promise<{ r: RunResult; s: number }> => {
      const t0 = Date.now();
      const r = await doctor(args, env);
      return { r, s: (Date.now() - t0) / 1000 };
    };
    // The same moment's cost of starting tsm and failing at once (a closed port), so a loaded
    // machine's slow Node start is not mistaken for a timeout that was ignored (10 s by default).
    const closed = `postgres://tsm@127.0.0.1:${await freePort()}/postgres`;
    const [url, envVar, flag, urlOverEnv, start] = await Promise.all([
      timed(['-d', `${hole.url()}?connect_timeout=2`]),
      timed(['-d', hole.url()], { PGCONNECT_TIMEOUT: '2' }),
      timed(['-d', `${hole.url()}?connect_timeout=30`, '--connect-timeout', '2'], { PGCONNECT_TIMEOUT: '30' }),
      timed(['-d', `${hole.url()}?connect_timeout=2`], { PGCONNECT_TIMEOUT: '30' }),
      timed(['-d', closed]),
    ]);
    refused(start.r, /connection refused/);
    for (const [name, { r, s }] of Object.entries({ url, envVar, flag, urlOverEnv })) {
      refused(r, /timed out after 2s/);
      const waited = s - start.s;
      assert.ok(waited > 1 && waited < 6, `${name}: gave up after ${s.toFixed(1)} s (${waited.toFixed(1)} s more than a start that failed at once), expected about 2 s`);
    }
    assert.ok(hole.accepted >= 4, 'every run reached the blackhole');
  });
});

describe('Unix-domain sockets of the machine’s server', { skip: requirePart('machine-socket') }, () => {
  // Run as the postgres OS user when root, so peer authentication works too (Debian's default).
  const as: RunOptions = runAs().uid !== undefined ? { uid: runAs().uid, gid: runAs().gid } : {};
  const sockHome = { HOME: '/var/lib/postgresql' };
  const skipNotRoot = as.uid === undefined ? 'needs root to run tsm as the postgres OS user' : undefined;

  it('postgres://postgres@/postgres?host=/var/run/postgresql connects', async () => {
    const doc = connected(await doctor(['-d', `postgres://postgres@/postgres?host=${MACHINE_SOCKET_DIR}`], sockHome, as));
    assert.equal(doc.database, `postgres://postgres@/postgres?host=${MACHINE_SOCKET_DIR}`);
  });

  it('PGHOST=/var/run/postgresql, and $USER unset (the OS user, postgres, is the user)', { skip: skipNotRoot }, async () => {
    connected(await doctor([], { ...sockHome, PGHOST: MACHINE_SOCKET_DIR, PGDATABASE: 'postgres', USER: undefined, LOGNAME: undefined }, as));
    connected(await doctor(['-d', `postgres:///postgres?host=${MACHINE_SOCKET_DIR}`], { ...sockHome, USER: undefined, LOGNAME: undefined }, as));
  });

  it('the test database is reachable the same way when the test server is the machine’s', async (t) => {
    const u = new URL(db.url);
    if (u.port !== '5432' || !['127.0.0.1', 'localhost'].includes(u.hostname)) return t.skip('the test server is not the machine’s');
    connected(await doctor(['-d', `postgres://postgres@/${db.name}?host=${MACHINE_SOCKET_DIR}`], sockHome, as));
  });
});
