/**
 * TLS with libpq's meaning of sslmode, against a private TLS-only PostgreSQL (hostssl lines only)
 * with its own throwaway CA, probed with the real CLI (`tsm doctor`: exit 0/1 = connected, 3 = not),
 * plus the library's pg config in a pg.Pool (the encryption is checked on the server, pg_stat_ssl).
 */
import assert from 'node:assert/strict';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { resolvePg } from '../src/db/resolve.js';
import { runTsm, type RunResult } from './helpers/cli.js';
import { createTestDatabase, serverUrl } from './helpers/db.js';
import { requirePart, startServer, type PrivateServer } from './helpers/topology.js';

// Each test file has its own database on the test server (used for the plain-server checks below).
const db = await createTestDatabase(import.meta.url);
const skip = requirePart('postgres', 'openssl');
const home = mkdtempSync(join(tmpdir(), 'tsm-tls-home-'));
after(() => rmSync(home, { recursive: true, force: true }));

/** HOME is an empty temp dir: no ~/.postgresql or ~/.pgpass of the machine takes part. */
const run = (url: string, env: Record<string, string | undefined> = {}, args: string[] = []): Promise<RunResult> =>
  runTsm(['doctor', '--json', '-d', url, ...args], { env: { HOME: home, ...env }, timeoutMs: 60_000 });

function connected(r: RunResult): void {
  assert.ok(r.code === 0 || r.code === 1, `expected a connection (exit 0/1), got ${r.code}: ${r.stderr}`);
  assert.equal(r.json<{ checks: { id: string; status: string }[] }>().checks.find((c) => c.id === 'connection')?.status, 'ok');
  assert.doesNotMatch(r.stderr, /warning/i, 'no warnings on stderr');
}

function refused(r: RunResult, pattern: RegExp): void {
  assert.equal(r.code, 3, `expected exit 3, got ${r.code}: ${r.stdout} ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line on stderr: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at |SECURITY WARNING/);
  assert.doesNotMatch(r.stdout + r.stderr, /pw-[a-z0-9]+/, 'no password printed');
}

async function sslInUse(config: pg.PoolConfig): Promise<boolean[]> {
  const pool = new pg.Pool({ ...config, max: 3 });
  try {
    const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
    const r = await Promise.all(clients.map((c) => c.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')));
    clients.forEach((c) => c.release());
    return r.map((x) => x.rows[0].ssl);
  } finally {
    await pool.end();
  }
}

describe('a TLS-only server with its own CA', { skip }, () => {
  let srv: PrivateServer;
  let url: string;
  before(async () => {
    srv = await startServer({ tls: true });
    url = srv.url('postgres');
  });

  it('sslmode=require connects (encrypts, does not verify the CA) with no warning on stderr', async () => {
    connected(await run(`${url}?sslmode=require`));
  });

  it('no sslmode connects: prefer, the default, uses the TLS the server offers', async () => {
    connected(await run(url));
    assert.deepEqual(await sslInUse(resolvePg(url, { env: { HOME: home } }).config), [true, true, true]);
  });

  it('sslmode=disable: exit 3, one line saying the server wants encryption', async () => {
    refused(await run(`${url}?sslmode=disable`), /does not accept unencrypted connections \(sslmode=disable\)/);
  });

  it('sslmode=allow: the plain attempt is refused, the TLS retry connects', async () => {
    connected(await run(`${url}?sslmode=allow`));
    assert.deepEqual(await sslInUse(resolvePg(`${url}?sslmode=allow`, { env: { HOME: home } }).config), [true, true, true]);
  });

  it('verify-full with sslrootcert connects', async () => {
    connected(await run(`${url}?sslmode=verify-full&sslrootcert=${srv.tls!.ca}`));
  });

  it('verify-full with another host name fails in one line: host name mismatch', async () => {
    // hostaddr: connect to 127.0.0.1 but check the certificate against the name given as host.
    const wrong = url.replace('@127.0.0.1:', '@db.wrong.example:');
    const r = await run(`${wrong}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert=${srv.tls!.ca}`);
    refused(r, /host name mismatch: the server's certificate is for 127\.0\.0\.1, localhost, not db\.wrong\.example/);
    // verify-ca checks the chain only: the same name is fine.
    connected(await run(`${wrong}?hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert=${srv.tls!.ca}`));
  });

  it('a root certificate of another CA: "not signed by sslrootcert", also for require (then like verify-ca)', async () => {
    for (const mode of ['verify-full', 'verify-ca', 'require']) {
      refused(await run(`${url}?sslmode=${mode}&sslrootcert=${srv.tls!.otherCa}`), /the server's certificate is not signed by sslrootcert .*other-ca\.crt/);
    }
  });

  it('PGSSLROOTCERT and PGSSLMODE are honoured', async () => {
    refused(await run(url, { PGSSLMODE: 'verify-full', PGSSLROOTCERT: srv.tls!.otherCa }), /not signed by sslrootcert/);
    connected(await run(url, { PGSSLMODE: 'verify-full', PGSSLROOTCERT: srv.tls!.ca }));
    refused(await run(url, { PGSSLMODE: 'verify-full' }), /needs a root certificate/);
  });

  it('~/.postgresql/root.crt is used by default (and makes require verify the chain)', async () => {
    const h = mkdtempSync(join(tmpdir(), 'tsm-tls-rootcrt-'));
    try {
      mkdirSync(join(h, '.postgresql'));
      cpSync(srv.tls!.ca, join(h, '.postgresql', 'root.crt'));
      connected(await run(`${url}?sslmode=verify-full`, { HOME: h }));
      cpSync(srv.tls!.otherCa, join(h, '.postgresql', 'root.crt'));
      refused(await run(`${url}?sslmode=require`, { HOME: h }), /not signed by sslrootcert .*root\.crt/);
    } finally {
      rmSync(h, { recursive: true, force: true });
    }
  });

  it('a client certificate (sslcert/sslkey, or PGSSLCERT/PGSSLKEY) logs in where the server requires one', async () => {
    const t = srv.tls!;
    const certUrl = `postgres://${t.certUser}@127.0.0.1:${srv.port}/postgres`;
    connected(await run(`${certUrl}?sslmode=verify-full&sslrootcert=${t.ca}&sslcert=${t.clientCert}&sslkey=${t.clientKey}`));
    connected(await run(`${certUrl}?sslmode=require`, { PGSSLCERT: t.clientCert, PGSSLKEY: t.clientKey }));
    // Without the certificate the server refuses (the cert method gets no certificate).
    refused(await run(`${certUrl}?sslmode=require`), /authentication rejected by the server/);
    // A key that does not belong to the certificate, or that others can read: one line each.
    refused(await run(`${certUrl}?sslmode=require&sslcert=${t.clientCert}&sslkey=${t.serverKey}`), /cannot use the TLS files \(sslcert .*client\.crt, sslkey .*server\.key\): .*mismatch/);
    const leaky = join(home, 'leaky.key');
    cpSync(t.clientKey, leaky);
    chmodSync(leaky, 0o644);
    refused(await run(`${certUrl}?sslmode=require&sslcert=${t.clientCert}&sslkey=${leaky}`), /private key file ".*leaky\.key" has group or world access/);
  });
});

describe('a server without TLS (the test server)', () => {
  it('prefer falls back to plain; require says the server does not accept TLS (unless it does)', async () => {
    const ssl = await sslInUse(resolvePg(db.url, { env: { HOME: home } }).config);
    const u = new URL(serverUrl());
    const offersTls = ssl[0];
    if (!offersTls) {
      refused(await run(`${db.url}?sslmode=require`), /the server does not accept TLS connections \(sslmode=require\)/);
    } else {
      connected(await run(`${db.url}?sslmode=require`));
    }
    connected(await run(db.url));
    connected(await run(`${db.url}?sslmode=allow`));
    assert.deepEqual(await sslInUse(resolvePg(`${db.url}?sslmode=disable`, { env: { HOME: home } }).config), [false, false, false]);
    assert.ok(u.hostname);
  });
});
