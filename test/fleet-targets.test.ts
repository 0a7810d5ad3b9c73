/**
 * Where a fleet's targets come from (issue 12): the target file (`[name] url`, comments, `${VAR}`,
 * `-` for stdin), `--targets-like PATTERN` with `-d`, and every usage error found before anything
 * connects (exit 2). Also: migrate status and test-write over a fleet, and an unreachable server
 * that costs one --connect-timeout, not one per target.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { parseTargetFile, withDatabase } from '../src/fleet/targets.js';
import { UsageError } from '../src/errors.js';
import { BIN, cleanEnv, runTsm } from './helpers/cli.js';
import { asAdmin, createTestDatabase, serverUrl } from './helpers/db.js';
import { fleetDatabase, fleetPrefix, historyOf, targetFile } from './helpers/fleet.js';
import { qi, SHIPPED } from './helpers/migrate.js';
import { startBlackhole } from './helpers/topology.js';

const db = await createTestDatabase(import.meta.url);

interface FleetJson {
  ok: boolean;
  summary: { ok: number; failed: number; unreachable: number; skipped: number };
  targets: { name: string; url: string; status: string; exit_code: number | null; result: Record<string, unknown> | null }[];
}

describe('the target file', () => {
  const env = { A_PW: 's3cret', DB_B: 'tenant_b' };

  it('one target a line, [name] url; comments and blank lines skipped; ${VAR} expanded', () => {
    const lines = parseTargetFile(
      ['# fleet', '', '  tenant_a  postgres://app:${A_PW}@db1:5432/tenant_a  ', 'postgres://app@db2/${DB_B}', 'eu host=db3 dbname=s user=app', 'host=db4 dbname=t'].join('\n'),
      'f.txt',
      env,
    );
    assert.deepEqual(lines, [
      { line: 3, name: 'tenant_a', conn: 'postgres://app:s3cret@db1:5432/tenant_a' },
      { line: 4, name: undefined, conn: 'postgres://app@db2/tenant_b' },
      { line: 5, name: 'eu', conn: 'host=db3 dbname=s user=app' },
      { line: 6, name: undefined, conn: 'host=db4 dbname=t' },
    ]);
  });

  it('unset variables: one usage error naming each and its lines; nothing else', () => {
    assert.throws(
      () => parseTargetFile('a postgres://u:${NOPE}@h/a\nb postgres://u:${NOPE}@h/b\nc ${ALSO_NOT}', 'f.txt', env),
      (err: unknown) =>
        err instanceof UsageError &&
        err.exitCode === 2 &&
        err.code === 'unset_variable' &&
        err.message === 'f.txt: environment variables not set: ${NOPE} (lines 1, 2), ${ALSO_NOT} (line 3); nothing was run',
    );
  });

  it('malformed lines and empty files are usage errors with the line', () => {
    assert.throws(() => parseTargetFile('just-a-name\n', 'f.txt', env), /f\.txt:1: 'just-a-name' is not a connection string/);
    assert.throws(() => parseTargetFile('# only comments\n\n', 'f.txt', env), /f\.txt: no targets/);
  });

  it('withDatabase points a URL or a keyword/value string at another database, keeping the rest', () => {
    assert.equal(withDatabase('postgres://u:p@h:5433/postgres?sslmode=require', 'tenant_a'), 'postgres://u:p@h:5433/tenant_a?sslmode=require');
    assert.equal(withDatabase('postgresql://u@h', 'x y'), 'postgresql://u@h/x%20y');
    assert.equal(withDatabase('postgres://u@/db?host=/var/run/postgresql&dbname=other', 't'), 'postgres://u@/t?host=/var/run/postgresql');
    assert.equal(withDatabase("host=h dbname=postgres", "it's"), "host=h dbname=postgres dbname='it\\'s'");
  });
});

describe('fleet targets from the command line', () => {
  it('${VAR} expansion: secrets from the environment, URLs masked in the table and the JSON', async () => {
    const p = fleetPrefix('var');
    const a = await fleetDatabase(`${p}_a`);
    const b = await fleetDatabase(`${p}_b`);
    // The URL with a password variable, whatever the test server's own authentication is.
    const u = new URL(serverUrl());
    const base = `postgres://${u.username}:\${FLEET_PW}@${u.host}`;
    const file = targetFile([`first ${base}/\${FLEET_DB_A}`, `${base}/${b.name}`]);
    const pw = u.password !== '' ? decodeURIComponent(u.password) : 'unused-by-trust-auth-9d1';
    const r = await runTsm(['migrate', 'status', '--targets', file, '--json'], { env: { FLEET_PW: pw, FLEET_DB_A: a.name } });
    assert.equal(r.code, 1, r.stderr); // both pending
    const doc = r.json<FleetJson>();
    assert.deepEqual(doc.targets.map((t) => [t.name, t.status, t.exit_code]), [
      ['first', 'failed', 1],
      [b.name, 'failed', 1],
    ]);
    assert.equal(doc.targets[0]!.url, `postgres://${u.username}:***@${u.host}/${a.name}`);
    assert.ok(!(r.stdout + r.stderr).includes(pw), 'the password is never printed');
    assert.equal((doc.targets[0]!.result as { summary: { pending: number } }).summary.pending, SHIPPED.length);
  });

  it('a missing variable is exit 2 naming it, before any connection', async () => {
    const hole = await startBlackhole();
    const file = targetFile([`first ${hole.url('a')}`, `second postgres://u:\${FLEET_MISSING_PW}@127.0.0.1:${hole.port}/b`]);
    const r = await runTsm(['migrate', 'up', '--targets', file, '--json'], { env: { FLEET_MISSING_PW: undefined } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /environment variable not set: \$\{FLEET_MISSING_PW\} \(line 2\); nothing was run/);
    assert.equal(hole.accepted, 0, 'nothing connected');
  });

  it('- reads the targets from stdin', async () => {
    const p = fleetPrefix('stdin');
    const a = await fleetDatabase(`${p}_a`);
    const child = spawn(process.execPath, [BIN, 'migrate', 'up', '--targets', '-', '--json'], { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    child.stdin.end(`# from a pipe\nstdin-a ${a.url}\n`);
    assert.equal(await closed, 0, err);
    const doc = JSON.parse(out) as FleetJson;
    assert.deepEqual(doc.targets.map((t) => [t.name, t.status]), [['stdin-a', 'ok']]);
    assert.deepEqual(await historyOf(a), SHIPPED);
  });

  it('usage errors: exit 2 before anything connects', async () => {
    const hole = await startBlackhole();
    const file = targetFile([hole.url('a')]);
    const cases: [string[], RegExp][] = [
      [['doctor', '--targets', file, '-d', hole.url('x')], /--targets and -d\/--database-url exclude each other/],
      [['doctor', '--targets', file, '--targets-like', 'x%'], /--targets and --targets-like exclude each other/],
      [['doctor', '--targets', '/nonexistent/targets.txt'], /--targets: cannot read \/nonexistent\/targets\.txt: no such file/],
      [['doctor', '--targets', file, '--explain', 'table'], /--explain needs no database/],
      [['test-write', '--targets', file, '--metrics-file', '/tmp/x.prom'], /--metrics-file cannot be combined with --targets/],
      [['migrate', 'up', '--targets', file, '--connection-budget', '2'], /--connection-budget 2 is below what one migrate up target holds \(3 connections\)/],
      [['migrate', 'up', '--targets', file, '--parallel', '0'], /--parallel: 0 is out of range/],
      [['migrate', 'up', '--targets', file, '--on-error', 'maybe'], /./],
      [['migrate', 'up', '--targets', file, '--lock-timeout', 'soon'], /--lock-timeout: 'soon' is not a duration/],
      [['doctor', '--targets', targetFile([`a ${hole.url('a')}`, `a ${hole.url('b')}`])], /target name 'a' is used twice \(lines 1 and 2\)/],
      [['doctor', '--targets', targetFile([hole.url('a'), `other ${hole.url('a')}`])], /lines 1 and 2 name the same database/],
      [['doctor', '--targets', targetFile(['x postgres://h:notaport/db'])], /targets\.txt:1: the connection string is not a valid URL/],
    ];
    for (const [args, message] of cases) {
      const r = await runTsm([...args, '--json']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    assert.equal(hole.accepted, 0, 'nothing connected');
  });

  it('an unreachable server costs one --connect-timeout (its targets are reported unreachable without another wait); the others run meanwhile', async () => {
    const hole = await startBlackhole();
    const p = fleetPrefix('hole');
    const a = await fleetDatabase(`${p}_a`);
    const b = await fleetDatabase(`${p}_b`);
    const file = targetFile([`h1 ${hole.url('one')}`, `h2 ${hole.url('two')}`, `h3 ${hole.url('three')}`, a.url, b.url]);
    const r = await runTsm(['doctor', '--targets', file, '--parallel', '2', '--connect-timeout', '2', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const doc = r.json<FleetJson>();
    assert.deepEqual(doc.summary, { ok: 0, failed: 2, unreachable: 3, skipped: 0 });
    assert.deepEqual(doc.targets.map((t) => t.status), ['unreachable', 'unreachable', 'unreachable', 'failed', 'failed']);
    for (const t of doc.targets.slice(0, 3)) {
      assert.match((t.result!.error as { message: string }).message, new RegExp(`cannot connect to ${t.url.replace(/[.?*+]/g, '\\$&')}: timed out after 2s`));
    }
    assert.equal(hole.accepted, 1, 'one connection attempt for the whole server');
  });
});

describe('--targets-like', () => {
  it("finds exactly the matching databases (not templates, not datallowconn = false) and runs over them", async () => {
    const p = fleetPrefix('like');
    const tenants = [await fleetDatabase(`${p}_tenant_a`), await fleetDatabase(`${p}_tenant_b`), await fleetDatabase(`${p}_tenant_c`)];
    await fleetDatabase(`${p}_other`);
    await fleetDatabase(`${p}_tenant`); // 'tenant_%' needs one more character
    await fleetDatabase(`${p}_tenant_tpl`, { preFix: false });
    await fleetDatabase(`${p}_tenant_closed`, { preFix: false });
    await asAdmin(async (c) => {
      await c.query(`ALTER DATABASE ${qi(`${p}_tenant_tpl`)} WITH IS_TEMPLATE true`);
      await c.query(`ALTER DATABASE ${qi(`${p}_tenant_closed`)} WITH ALLOW_CONNECTIONS false`);
    });
    try {
      const like = `${p}_tenant_%`;
      const status = await runTsm(['migrate', 'status', '--targets-like', like, '-d', db.url, '--json']);
      assert.equal(status.code, 1, status.stderr);
      const names = status.json<FleetJson>().targets.map((t) => t.name);
      assert.deepEqual(names, tenants.map((t) => t.name));

      const up = await runTsm(['migrate', 'up', '--targets-like', like, '-d', db.url, '--json']);
      assert.equal(up.code, 0, up.stderr);
      const doc = up.json<FleetJson>();
      assert.deepEqual(doc.summary, { ok: 3, failed: 0, unreachable: 0, skipped: 0 });
      for (const t of doc.targets) assert.ok(t.url.endsWith(`/${t.name}`), t.url);
      for (const t of tenants) assert.deepEqual(await historyOf(t), SHIPPED);

      // A rerun is the resume: nothing to do anywhere.
      const again = await runTsm(['migrate', 'up', '--targets-like', like, '-d', db.url, '--json']);
      assert.equal(again.code, 0, again.stderr);
      for (const t of again.json<FleetJson>().targets) assert.deepEqual(t.result!.steps, []);

      const status2 = await runTsm(['migrate', 'status', '--targets-like', like, '-d', db.url]);
      assert.equal(status2.code, 0, status2.stderr);
      assert.match(status2.stdout, /3 targets: 3 ok, 0 failed, 0 unreachable, 0 skipped/);
      assert.match(status2.stdout, /up to date \(6 applied\)/);

      // test-write over the fleet: its own document per target; rows cleaned up everywhere.
      const tw = await runTsm(['test-write', '--targets-like', like, '-d', db.url, '--lengths', '68,800', '--concurrency', '2', '--rounds', '2', '--json']);
      assert.equal(tw.code, 0, tw.stderr);
      for (const t of tw.json<FleetJson>().targets) {
        assert.equal(t.result!.ok, true);
        assert.deepEqual((t.result!.results as { length: number }[]).map((x) => x.length), [68, 800]);
      }
      for (const t of tenants) {
        const left = await t.sql(`SELECT count(*)::int AS n FROM public.telegram_sessions WHERE tenant_id = 'tsm-test'`);
        assert.equal(left.rows[0].n, 0, `${t.name}: test rows removed`);
      }

      const none = await runTsm(['doctor', '--targets-like', `${p}_nothing_%`, '-d', db.url]);
      assert.equal(none.code, 2);
      assert.match(none.stderr, /--targets-like '.*_nothing_%': no database on .* matches/);
    } finally {
      await asAdmin(async (c) => {
        await c.query(`ALTER DATABASE ${qi(`${p}_tenant_tpl`)} WITH IS_TEMPLATE false`);
      });
    }
  });

  it('--targets-like needs a server to list databases on', async () => {
    const r = await runTsm(['doctor', '--targets-like', 'x%']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--targets-like needs the server to list databases on: -d/);
  });
});
