/**
 * Checksums of shipped migrations changed by this release (issue 8 changed 0001–0005): a database
 * migrated by tsm 0.1.0 recorded the SHA-256 of 0.1.0's compiled files. Those are accepted as
 * earlier versions of the same shipped migrations ("applied by an earlier tsm"), so `status`,
 * `up` and doctor's `migrations` check do not read them as modified; a team's edited copy of a
 * shipped file still is. Also: a history table made by plain node-pg-migrate (no checksum column).
 *
 * The 0.1.0 checksums below were computed from a build of commit 897b880 (`npm ci && npm run
 * build`, then SHA-256 of dist/migrations/*.js with CRLF → LF, as src/migrate/files.ts does).
 */
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestDatabase } from './helpers/db.js';
import { doctor } from './helpers/doctor.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, history, lastLine, migrate, qi } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);

const V010: Record<string, string> = {
  '0001_create_table': '8ddf18298b5035cd5ee33c69c79d3c36727f2663cd5582f338b5275a43c24335',
  '0002_widen_session_columns': '72816af07a1b2c08e800e34a059ca37aa800fbfaf3debb7e8bfb672e9a068eec',
  '0003_diagnostic_columns': 'fa8d489e994191acc78e580bfe36016c9f3a57fda73f837d248894e3eb50d9c3',
  '0004_user_id_unique_index': 'ae1e93399846516d37b7bebb99d76d4b8334e209fdbd6f4cfa77d98a1059cdf4',
  '0005_upsert_function': 'c97cd6797f9bfd725e4ac2320949c05564fe5704ab5fefb3a8ff6f3b4aa236d1',
};
const RELEASE = 'tsm 0.1.0 (build 897b880)';

/** A schema as tsm 0.1.0 left it: 0001–0005 applied, recorded with 0.1.0's checksums. */
async function migratedBy010(schema: string): Promise<void> {
  await db.sql(preFixSchema(schema));
  const r = await migrate(db.url, ['up', '5', '--schema', schema]);
  assert.equal(r.code, 0, r.stderr);
  for (const [name, sum] of Object.entries(V010)) {
    await db.sql(`UPDATE ${qi(schema)}.tsm_migrations SET checksum = $2 WHERE name = $1`, [name, sum]);
  }
}

describe('checksums of shipped migrations applied by an earlier tsm', () => {
  it('status: 0001–0005 applied (by an earlier tsm), 0006 pending; up applies 0006 only; then up to date', async () => {
    await migratedBy010('v010');
    const st = await migrate(db.url, ['status', '--json', '--schema', 'v010']);
    assert.equal(st.code, 1, 'one pending');
    const rows = st.json().migrations as { name: string; state: string; applied_by_earlier?: string }[];
    assert.deepEqual(rows.map((m) => [m.name, m.state, m.applied_by_earlier ?? null]), [
      ...SHIPPED.slice(0, 5).map((n) => [n, 'applied', RELEASE]),
      ['0006_harden_upsert_function', 'pending', null],
    ]);
    assert.deepEqual(st.json().summary, { applied: 5, pending: 1, modified: 0, missing: 0 });
    const human = await migrate(db.url, ['status', '--schema', 'v010']);
    assert.match(human.stdout, /0001_create_table, 0002_widen_session_columns, 0003_diagnostic_columns, 0004_user_id_unique_index, 0005_upsert_function: applied by an earlier tsm \(tsm 0\.1\.0 \(build 897b880\)\)/);

    const doc = await doctor(db.url, ['--schema', 'v010']);
    assert.equal(doc.check('migrations').status, 'warn');
    assert.equal(doc.check('migrations').detail, '1 pending (0006_harden_upsert_function)');

    const dry = await migrate(db.url, ['up', '--dry-run', '--json', '--schema', 'v010']);
    assert.equal(dry.json().refusal, null);
    const up = await migrate(db.url, ['up', '--json', '--schema', 'v010']);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(up.json().steps.map((s: { name: string }) => s.name), ['0006_harden_upsert_function']);
    assert.deepEqual(up.json().warnings, []);
    const done = await migrate(db.url, ['status', '--schema', 'v010']);
    assert.equal(done.code, 0, done.stdout);
    assert.equal((await doctor(db.url, ['--schema', 'v010'])).check('migrations').status, 'ok');
    // The record still says what was applied: 0.1.0's files.
    const recorded = (await db.sql(`SELECT name, checksum FROM v010.tsm_migrations WHERE name <> '0006_harden_upsert_function' ORDER BY name`)).rows;
    assert.deepEqual(Object.fromEntries(recorded.map((r) => [r.name, r.checksum])), V010);
  });

  it("a team's copy of the shipped files: the current copy counts as applied, an edited copy is modified", async (t) => {
    await migratedBy010('team');
    const shippedDir = fileURLToPath(new URL('../migrations/', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'tsm-team-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    for (const f of readdirSync(shippedDir).filter((f) => f.endsWith('.js'))) copyFileSync(join(shippedDir, f), join(dir, f));
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    const states = async (): Promise<string[]> =>
      (await migrate(db.url, ['status', '--json', '--schema', 'team', '--migrations-dir', dir])).json().migrations.map((m: { state: string }) => m.state);
    assert.deepEqual(await states(), ['applied', 'applied', 'applied', 'applied', 'applied', 'pending']);

    appendFileSync(join(dir, '0002_widen_session_columns.js'), '\n// edited by the team\n');
    assert.deepEqual(await states(), ['applied', 'modified', 'applied', 'applied', 'applied', 'pending']);
    const r = await migrate(db.url, ['up', '--schema', 'team', '--migrations-dir', dir]);
    assert.equal(r.code, 1);
    assert.match(lastLine(r.stderr), /^tsm: refusing to migrate: an applied migration was changed since applied: 0002_widen_session_columns \(applied sha256 72816af07a1b…/);
  });

  it('an unknown checksum for a shipped migration is modified, not an earlier release', async () => {
    await migratedBy010('unknown');
    await db.sql(`UPDATE unknown.tsm_migrations SET checksum = repeat('0', 64) WHERE name = '0003_diagnostic_columns'`);
    const st = await migrate(db.url, ['status', '--json', '--schema', 'unknown']);
    assert.equal(st.json().migrations[2].state, 'modified');
    const r = await migrate(db.url, ['up', '--schema', 'unknown']);
    assert.equal(r.code, 1);
    assert.match(lastLine(r.stderr), /refusing to migrate: an applied migration was changed since applied: 0003_diagnostic_columns/);
  });

  it("a history table made by plain node-pg-migrate (no checksum column): up adds the column, records checksums from then on", async () => {
    await db.sql(preFixSchema('npm'));
    await db.sql(`CREATE TABLE npm.tsm_migrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL)`);
    assert.equal((await migrate(db.url, ['up', '3', '--schema', 'npm'])).code, 0);
    assert.equal((await db.sql(`SELECT count(checksum)::int AS n FROM npm.tsm_migrations`)).rows[0].n, 3, 'the column was added and filled for new rows');
    await db.sql(`UPDATE npm.tsm_migrations SET checksum = NULL`);
    const r = await migrate(db.url, ['up', '--schema', 'npm', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await history(db, 'npm'), SHIPPED);
    const st = await migrate(db.url, ['status', '--json', '--schema', 'npm']);
    assert.equal(st.code, 0, 'NULL checksums (recorded before tsm kept them) are applied');
  });
});
