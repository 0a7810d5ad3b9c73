/**
 * The library used the way an application uses it: imported by the package's name (its built
 * entry, through package.json "exports"), with the application's own pg client, reading the
 * results. runDoctor and dedupe hand the client back usable (no transaction left open, its own
 * lock_timeout); in an application process of its own they print nothing and exit nothing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import pg from 'pg';
// The package's own name: resolves to dist/src/index.js, as it does for an application.
import { CHECK_IDS, classifyError, dedupe, exitCodeFor, runDoctor, type CheckResult, type DedupeReport, type DoctorReport } from 'pg-telegram-sessions';
import { createTestDatabase } from './helpers/db.js';
import { fixedFunction, preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(`${preFixSchema('app')}
  INSERT INTO app.telegram_sessions (tenant_id, user_id, session_string_enc, updated_at)
  SELECT 'acme', 'u' || (i % 40), 'session-' || i, now() - i * interval '1 minute' FROM generate_series(1, 100) i;
  INSERT INTO app.telegram_sessions (tenant_id, user_id, session_string_enc) VALUES ('acme', NULL, 'pending');`);

// The application's client, with a setting of its own that tsm must not change.
const app = new pg.Client({ connectionString: db.url, application_name: 'my-app' });
app.on('error', () => {}); // the test database is dropped WITH (FORCE) at the end
await app.connect();
after(() => app.end());
await app.query(`SET lock_timeout = '1234ms'`);

/** The application's connection as the server sees it, from another session. */
async function appState(): Promise<{ state: string; lock_timeout: string; in_transaction: boolean }> {
  const pid = (await app.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const lockTimeout = (await app.query<{ v: string }>(`SELECT current_setting('lock_timeout') AS v`)).rows[0]!.v;
  const s = (await db.sql(`SELECT state FROM pg_stat_activity WHERE pid = $1`, [pid])).rows[0] as { state: string };
  return { state: s.state, lock_timeout: lockTimeout, in_transaction: s.state.includes('transaction') };
}

const byId = (r: DoctorReport): Map<string, CheckResult> => new Map(r.checks.map((c) => [c.id, c]));

describe('the library, as an application uses it', () => {
  it('runDoctor on the pre-fix schema: a report to read, exit code 1, the client as it was', async () => {
    const report = await runDoctor(app, { schema: 'app', minSessionLength: 4096 }, 'app-db');
    assert.equal(report.database, 'app-db');
    assert.equal(report.schema, 'app');
    assert.deepEqual(report.checks.map((c) => c.id), [...CHECK_IDS]);
    const checks = byId(report);
    assert.equal(checks.get('index.user-id-unique')?.status, 'fail');
    assert.equal(checks.get('index.on-conflict')?.status, 'fail');
    assert.match(checks.get('data.duplicates')?.detail ?? '', /^40 user_ids with more than one row \(100 rows\)/);
    assert.equal(checks.get('data.null-user-id')?.status, 'warn');
    assert.match(checks.get('data.duplicates')?.remedy ?? '', /tsm dedupe --dry-run --schema app/);
    assert.equal(exitCodeFor(report.summary, 'fail'), 1);
    assert.equal(report.summary.fail, checks.size - [...checks.values()].filter((c) => c.status !== 'fail').length);
    assert.deepEqual(await appState(), { state: 'idle', lock_timeout: '1234ms', in_transaction: false });
  });

  it('dedupe --dry-run then for real: reports to read, the archive filled, the client as it was', async () => {
    const plan: DedupeReport = await dedupe(app, { schema: 'app', keep: 'newest', batchSize: 7, dryRun: true });
    assert.equal(plan.dry_run, true);
    assert.equal(plan.would_move?.length, 40);
    assert.equal(plan.before.excess_rows, 60);
    assert.equal(plan.ok, false, 'duplicates remain after a dry run');
    assert.deepEqual(await appState(), { state: 'idle', lock_timeout: '1234ms', in_transaction: false });

    const lines: string[] = [];
    const done = await dedupe(app, { schema: 'app', keep: 'newest', batchSize: 7, dryRun: false, log: (l) => lines.push(l) });
    assert.equal(done.ok, true);
    assert.equal(done.archived, 60);
    assert.equal(done.duplicates_remaining, 0);
    assert.equal(done.conservation?.holds, true);
    assert.equal(done.verification?.ok, true);
    assert.ok(lines.some((l) => /batch/.test(l)), 'progress goes to the log hook the application gave');
    const rows = (await app.query<{ table: number; archive: number }>(
      `SELECT (SELECT count(*) FROM app.telegram_sessions)::int AS table,
              (SELECT count(*) FROM app.telegram_sessions_duplicates_archive)::int AS archive`,
    )).rows[0];
    assert.deepEqual(rows, { table: 41, archive: 60 });
    assert.deepEqual(await appState(), { state: 'idle', lock_timeout: '1234ms', in_transaction: false });
  });

  it('after dedupe and the fix, runDoctor is green on the same client', async () => {
    await db.sql(`ALTER TABLE app.telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text;
      CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON app.telegram_sessions (user_id) WHERE user_id IS NOT NULL;
      ${fixedFunction('app')}`);
    const report = await runDoctor(app, { schema: 'app', minSessionLength: 4096 }, 'app-db');
    const notOk = report.checks.filter((c) => c.status !== 'ok' && c.status !== 'skipped').map((c) => `${c.id}: ${c.status} ${c.detail}`);
    assert.deepEqual(notOk, ['data.null-user-id: warn 1 row with NULL user_id (pending or abandoned logins)']);
    assert.equal(exitCodeFor(report.summary, 'fail'), 0);
    assert.equal(exitCodeFor(report.summary, 'warn'), 1);
  });

  it('errors reach the application as errors it can classify (a closed client)', async () => {
    const closed = new pg.Client({ connectionString: db.url });
    await closed.connect();
    await closed.end();
    const err = await runDoctor(closed, { schema: 'app', minSessionLength: 4096 }, 'app-db').then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error, 'runDoctor rejects');
    const d = await dedupe(closed, { schema: 'app', keep: 'newest', batchSize: 10, dryRun: true }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.equal(classifyError(d).code, 'connection_error');
  });

  it('in an application process of its own: only the application writes to stdout and stderr, and it exits by itself', async () => {
    const script = `
      import pg from 'pg';
      import { dedupe, runDoctor, exitCodeFor } from 'pg-telegram-sessions';
      const client = new pg.Client({ connectionString: process.env.APP_DATABASE_URL });
      await client.connect();
      const report = await runDoctor(client, { schema: 'app', minSessionLength: 4096 }, 'app-db');
      const plan = await dedupe(client, { schema: 'app', keep: 'newest', batchSize: 10, dryRun: true });
      await client.end();
      process.stdout.write(JSON.stringify({ exit: exitCodeFor(report.summary, 'warn'), checks: report.checks.length, duplicates: plan.before.duplicate_users }));
    `;
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env: { ...process.env, APP_DATABASE_URL: db.url } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(stderr, '');
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), { exit: 1, checks: CHECK_IDS.length, duplicates: 0 });
  });
});
