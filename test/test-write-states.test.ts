/**
 * `tsm test-write` against the incident's states, built by hand: the pre-fix schema (no unique
 * index, no function), the racy UPDATE-then-INSERT function with and without the unique index,
 * a role without privileges. What it reports, and that it never touches rows it did not create.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TestWriteJson } from '../src/cli/commands/test-write/run.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema, incidentRacyFunction, preFixSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(`
  ${preFixSchema('prefix')}
  ${preFixSchema('racy')}
  ALTER TABLE racy.telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text;
  CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON racy.telegram_sessions (user_id) WHERE user_id IS NOT NULL;
  ${incidentRacyFunction('racy', { windowMs: 20 })}
  ${preFixSchema('incident')}
  ALTER TABLE incident.telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text;
  ${incidentRacyFunction('incident', { windowMs: 20 })}
  ${fixedSchema('public')}
`);

/** Rows that are not ours, including look-alikes in the test tenant: they must survive every run. */
const FOREIGN = [
  ['app', '139883458'],
  ['tsm-test', 'tsm-test:deadbeef:1'],
  ['tsm-test', 'someone-else'],
  ['other', 'tsm-test:00000000:2'],
];
for (const schema of ['prefix', 'racy', 'incident', 'public']) {
  for (const [tenant, user] of FOREIGN) {
    await db.sql(`INSERT INTO "${schema}".telegram_sessions (tenant_id, user_id, session_string_enc, key_id) VALUES ($1, $2, 'keep-me', 'k')`, [tenant, user]);
  }
}

async function foreignIntact(schema: string): Promise<void> {
  const r = await db.sql(`SELECT tenant_id, user_id, session_string_enc FROM "${schema}".telegram_sessions ORDER BY tenant_id, user_id`);
  assert.deepEqual(
    r.rows,
    [...FOREIGN].sort((a, b) => (a[0] + '\0' + a[1] < b[0] + '\0' + b[1] ? -1 : 1)).map(([t, u]) => ({ tenant_id: t, user_id: u, session_string_enc: 'keep-me' })),
    `${schema}: exactly the rows that were there before`,
  );
}

describe('tsm test-write on the incident pre-fix schema', () => {
  it('--via statement: missing_unique_index (42P10) everywhere, remedy tsm migrate up, exit 1', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'prefix', '--via', 'statement', '--rounds', '3']);
    assert.equal(r.code, 1, r.stderr);
    const j = r.json<TestWriteJson>();
    assert.equal(j.via, 'statement');
    assert.deepEqual(
      j.results.map((x) => [x.insert, x.update, x.readback, x.ok, x.code]),
      [68, 268, 800].map(() => ['fail', 'skipped', 'skipped', false, 'missing_unique_index']),
    );
    assert.deepEqual(j.race, { concurrency: 8, rounds: 3, calls: 48, errors: { missing_unique_index: 48 }, rows_left: 0, ok: false });
    assert.equal(j.ok, false);

    const h = await runTsm(['test-write', '-d', db.url, '--schema', 'prefix', '--via', 'statement', '--lengths', '800', '--rounds', '1']);
    assert.equal(h.code, 1);
    assert.match(h.stdout, /missing_unique_index \(42P10\)/);
    assert.match(h.stdout, /missing_unique_index: length 800: 42P10: there is no unique or exclusion constraint matching the ON CONFLICT specification/);
    assert.match(h.stdout, /remedy: tsm migrate up --schema prefix \(builds the unique index/);
    await foreignIntact('prefix');
  });

  it('--via function: missing_upsert_function, remedy tsm migrate up, exit 1', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'prefix', '--rounds', '2']);
    assert.equal(r.code, 1);
    const j = r.json<TestWriteJson>();
    assert.ok(j.results.every((x) => x.code === 'missing_upsert_function'));
    assert.deepEqual(j.race.errors, { missing_upsert_function: 32 });

    const h = await runTsm(['test-write', '-d', db.url, '--schema', 'prefix', '--lengths', '68', '--rounds', '1']);
    assert.match(h.stdout, /missing_upsert_function \(42883\)/);
    assert.match(h.stdout, /remedy: tsm migrate up --schema prefix \(installs "prefix"\."upsert_telegram_session"\)/);
    await foreignIntact('prefix');
  });
});

describe('tsm test-write on the racy incident function', () => {
  it('with the unique index: lengths pass, but the insert race reports duplicate_session; exit 1', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'racy']);
    assert.equal(r.code, 1, r.stderr);
    const j = r.json<TestWriteJson>();
    assert.ok(j.results.every((x) => x.ok), 'one writer at a time is fine');
    assert.deepEqual(Object.keys(j.race.errors), ['duplicate_session'], JSON.stringify(j.race));
    assert.ok(j.race.errors.duplicate_session > 0);
    assert.equal(j.race.rows_left, 1, 'the index still keeps one row per user');
    assert.equal(j.race.ok, false);
    await foreignIntact('racy');

    const h = await runTsm(['test-write', '-d', db.url, '--schema', 'racy', '--lengths', '68']);
    assert.equal(h.code, 1);
    assert.match(h.stdout, /race: .*duplicate_session × \d+, rows left 1 → fail/);
    assert.match(h.stdout, /duplicate_session: race: 23505: duplicate key value violates unique constraint/);
    assert.match(h.stdout, /remedy: tsm migrate up --schema racy \(replaces an UPDATE-then-INSERT/);
  });

  it('without it (the incident as it was): the race leaves duplicate rows, then updates of them fail; all removed', async () => {
    const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', 'incident', '--lengths', '68']);
    assert.equal(r.code, 1);
    const j = r.json<TestWriteJson>();
    assert.ok(j.race.rows_left > 1, `rows_left ${j.race.rows_left}`);
    // No unique index, so no duplicate_session: the second UPDATE … INTO of a duplicated user
    // finds several rows (P0003 too_many_rows, a database_error).
    assert.deepEqual(Object.keys(j.race.errors).filter((c) => c !== 'database_error'), []);
    assert.equal(j.race.ok, false);
    await foreignIntact('incident');

    const h = await runTsm(['test-write', '-d', db.url, '--schema', 'incident', '--lengths', '68']);
    assert.match(h.stdout, /duplicate_rows: race: a user id ended with \d+ rows/);
    assert.match(h.stdout, /remedy: user_id is not unique: tsm doctor --schema incident, then tsm dedupe --schema incident and tsm migrate up --schema incident/);
    await foreignIntact('incident');
  });
});

describe('tsm test-write with a restricted role', () => {
  it('permission_denied, with the GRANT as the remedy; exit 1', async () => {
    const role = await db.role('tsm_tw_ro');
    const r = await runTsm(['test-write', '-d', role.url, '--lengths', '68', '--rounds', '1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /permission_denied \(42501\)/);
    assert.match(r.stdout, /remedy: GRANT SELECT, INSERT, UPDATE, DELETE ON "public"\."telegram_sessions" TO current_user;/);
    await foreignIntact('public');
  });
});
