/**
 * tsm doctor and everything a user can get wrong (issue 2, test 11): each is one line on stderr, the
 * right exit code, no stack trace, and no password anywhere in the output.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { freePort } from '../src/cli/commands/demo/embedded.js';
import { runTsm, type RunResult } from './helpers/cli.js';
import { createTestDatabase, serverUrl, urlFor } from './helpers/db.js';

const db = await createTestDatabase(import.meta.url);
const SECRET = 'S3cret-' + Math.random().toString(36).slice(2, 10);
const ADMIN_PASSWORD = decodeURIComponent(new URL(serverUrl()).password);

function assertNoSecrets(r: RunResult, ...secrets: string[]): void {
  const out = r.stdout + r.stderr;
  for (const s of [SECRET, ...secrets].filter((x) => x !== '')) {
    assert.ok(!out.includes(s), `a password was printed:\n${out}`);
    assert.ok(!out.includes(encodeURIComponent(s)), `a password was printed (URL-encoded):\n${out}`);
  }
}

/** Exactly one line on stderr, `tsm: …`, nothing on stdout, no stack trace, no password. */
function assertOneLineError(r: RunResult, code: number, pattern: RegExp, ...secrets: string[]): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  // --json: the error document on stdout (docs/output.md), else nothing there.
  if (r.stdout !== '') assert.equal(r.json<{ ok: boolean; error: { message: string } }>().ok, false);
  assert.match(r.stderr, /^[^\n]+\n$/, `exactly one line on stderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, / {4}at /, 'no stack trace');
  assert.match(r.stderr, pattern);
  assertNoSecrets(r, ...secrets);
}

describe('tsm doctor: bad inputs', () => {
  it('malformed URLs: exit 2, masked', async () => {
    const badPort = await runTsm(['doctor', '-d', `postgres://app:${SECRET}@db.example:notaport/app`]);
    assertOneLineError(badPort, 2, /^tsm: --database-url is not a valid URL: postgres:\/\/app:\*\*\*@/);
    const garbage = await runTsm(['doctor', '-d', `postgres://app:${SECRET}@[::1/app`]);
    assertOneLineError(garbage, 2, /not a valid URL/);
    const scheme = await runTsm(['doctor', '-d', `mysql://app:${SECRET}@127.0.0.1/app`]);
    assertOneLineError(scheme, 2, /must start with postgres:\/\//);
    const fromEnv = await runTsm(['doctor'], { env: { DATABASE_URL: `postgres://app:${SECRET}@host:99x/app` } });
    assertOneLineError(fromEnv, 2, /^tsm: DATABASE_URL is not a valid URL/);
  });

  it('unreachable port: exit 3, connection refused', async () => {
    const port = await freePort();
    const r = await runTsm(['doctor', '-d', `postgres://app:${SECRET}@127.0.0.1:${port}/app`]);
    assertOneLineError(r, 3, new RegExp(`^tsm: cannot connect to postgres://app:\\*\\*\\*@127\\.0\\.0\\.1:${port}/app: connection refused`));
    const query = await runTsm(['doctor', '--json', '-d', `postgres://app@127.0.0.1:${port}/app?password=${SECRET}`]);
    assertOneLineError(query, 3, /connection refused/);
  });

  it('wrong password: exit 3 where the server checks passwords; never printed either way', async () => {
    const role = await db.role('tsm_doc_pw', 'Right-' + SECRET);
    const wrongUrl = urlFor(db.name, { user: role.name, password: SECRET });
    // The machine's server trusts local logins (any password works); the embedded one checks them.
    const probe = new pg.Client({ connectionString: wrongUrl });
    probe.on('error', () => {});
    const trusted = await probe.connect().then(
      () => true,
      () => false,
    );
    await probe.end().catch(() => {});

    const r = await runTsm(['doctor', '-d', wrongUrl]);
    if (trusted) {
      // Trust authentication: the login succeeds and doctor reports on the (empty) database.
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, /1 ok, 0 warning, 1 failing, 11 skipped/);
      assertNoSecrets(r, role.password);
    } else {
      assertOneLineError(r, 3, /^tsm: cannot connect to .*:\*\*\*@.*: password authentication failed/, role.password);
    }
  });

  it('a database that does not exist: exit 3, names it', async () => {
    const r = await runTsm(['doctor', '-d', urlFor('tsm_no_such_database_x')]);
    assertOneLineError(r, 3, /^tsm: cannot connect to .*: database "tsm_no_such_database_x" does not exist/, ADMIN_PASSWORD);
  });

  it('--explain nope: exit 2, lists the valid ids (no database needed)', async () => {
    const r = await runTsm(['doctor', '--explain', 'nope']);
    assertOneLineError(r, 2, /^tsm: --explain: unknown check 'nope'; valid ids: connection, table, .*index\.on-conflict.*, migrations\n$/);
  });

  it('--min-session-length abc / 0 / 1.5: exit 2, before connecting', async () => {
    for (const bad of ['abc', '0', '1.5', '']) {
      const r = await runTsm(['doctor', '-d', db.url, '--min-session-length', bad]);
      assertOneLineError(r, 2, /^tsm: --min-session-length: /, ADMIN_PASSWORD);
    }
  });

  it('--fail-on other than fail / warn: exit 2', async () => {
    const r = await runTsm(['doctor', '-d', db.url, '--fail-on', 'never']);
    assertOneLineError(r, 2, /fail-on/, ADMIN_PASSWORD);
  });

  it('no database configured: exit 2, says how to configure one and that `tsm demo` needs none', async () => {
    const r = await runTsm(['doctor']);
    assertOneLineError(r, 2, /^tsm: no database configured: .*--database-url.*DATABASE_URL.*PG.*`tsm demo` needs none/);
  });
});
