/**
 * tsm dedupe on read-only servers (issue 10): on a hot standby (made with pg_basebackup) and on a
 * primary whose role defaults to read-only transactions, dedupe refuses up front with one line
 * naming the primary, exit 1, and never says "rows moved before this" (nothing moved); the --json
 * error document (and the library's FailError) carries the code `read_only`. --dry-run works on the standby.
 *
 * On the code before this test the standby answered "dedupe stopped: read_only (25006): cannot
 * execute CREATE TABLE in a read-only transaction; rows moved before this are in the archive …".
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { dedupe, type DedupeReport } from '../src/dedupe/engine.js';
import { FailError } from '../src/errors.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { requirePart, startServer, startStandby } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

const DUPLICATES = `${preFixSchema('public')}
  INSERT INTO telegram_sessions (tenant_id, user_id, updated_at)
  SELECT 't', 'u-' || i, timestamptz '2024-01-01' + j * interval '1 day' FROM generate_series(1, 20) i, generate_series(1, 3) j;`;

describe('tsm dedupe on a hot standby', { skip: requirePart('pg_basebackup') }, () => {
  it('refuses with one line naming the primary, exit 1, nothing moved; --dry-run lists the duplicates', async () => {
    const primary = await startServer();
    await primary.sql(DUPLICATES);
    const standby = await startStandby(primary);
    await waitFor('the rows replicated to the standby', async () => (await standby.sql('SELECT count(*)::int AS n FROM telegram_sessions')).rows[0].n === 60);

    const r = await runTsm(['dedupe', '-d', standby.url('postgres')]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'tsm: read-only server (hot standby): connect to the primary\n');
    assert.doesNotMatch(r.stderr, /moved/);

    const j = await runTsm(['dedupe', '-d', standby.url('postgres'), '--json']);
    assert.equal(j.code, 1);
    assert.deepEqual(j.json().error, { code: 'read_only', message: 'read-only server (hot standby): connect to the primary' });
    assert.equal(j.json().in_recovery, true);

    // The library's refusal carries the same code.
    const c = new pg.Client({ connectionString: standby.url('postgres') });
    await c.connect();
    try {
      await assert.rejects(dedupe(c, { schema: 'public', keep: 'newest', dryRun: false }), (e: unknown) => e instanceof FailError && e.code === 'read_only');
    } finally {
      await c.end();
    }

    const dry = await runTsm(['dedupe', '-d', standby.url('postgres'), '--dry-run', '--json']);
    assert.equal(dry.code, 1, dry.stderr);
    const plan = dry.json<DedupeReport>();
    assert.equal(plan.dry_run, true);
    assert.equal(plan.would_move?.length, 20);
    assert.deepEqual(plan.before, { rows: 60, duplicate_users: 20, excess_rows: 40, archive_rows: 0 });

    // The primary is where it works.
    const fixed = await runTsm(['dedupe', '-d', primary.url('postgres'), '--json']);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.equal(fixed.json<DedupeReport>().archived, 40);
  });
});

describe('tsm dedupe with default_transaction_read_only', () => {
  it('refuses with the reason, exit 1, nothing created or moved', async () => {
    await db.sql(DUPLICATES);
    const role = await db.role('tsm_dedupe_ro_default');
    await db.sql(`GRANT ALL ON SCHEMA public TO "${role.name}"; GRANT ALL ON telegram_sessions TO "${role.name}";
                  ALTER ROLE "${role.name}" SET default_transaction_read_only = on`);
    const r = await runTsm(['dedupe', '-d', role.url]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tsm: read-only server \(default_transaction_read_only = on for this server, database or role\): connect to the primary, or use a role whose sessions can write\n$/);
    assert.equal((await db.sql(`SELECT to_regclass('public.telegram_sessions_duplicates_archive') AS r`)).rows[0].r, null, 'no archive created');
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions`)).rows[0].n, 60);
    const dry = await runTsm(['dedupe', '-d', role.url, '--dry-run', '--json']);
    assert.equal(dry.code, 1, dry.stderr);
    assert.equal(dry.json<DedupeReport>().would_move?.length, 20, '--dry-run only reads');
  });
});
