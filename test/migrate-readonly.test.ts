/**
 * tsm migrate on read-only servers (issue 10). On a hot standby `migrate up` used to print
 * "tsm: unexpected error: cannot execute CREATE TABLE in a read-only transaction", and with
 * duplicate user_ids it advised `tsm dedupe` (its preflight ran first). Now `up` and `down` check
 * the server first: exit 1, one line naming the primary, no retries, nothing attempted; a primary
 * whose sessions default to read-only gets its own line. `status` and `--dry-run` read, so they
 * work on a standby (the dry run says up would be refused there).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, catalogSnapshot, history, lastLine, migrate, qi, seed } from './helpers/migrate.js';
import { startCostMs } from './helpers/cli.js';
import { requirePart, startServer, startStandby } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

const db = await createTestDatabase(import.meta.url);

const STANDBY_LINE = 'tsm: read-only server (hot standby): connect to the primary';
const DEFAULT_RO_LINE =
  'tsm: read-only server (default_transaction_read_only = on for this server, database or role): connect to the primary, or use a role whose sessions can write';

describe('tsm migrate on a hot standby', { skip: requirePart('postgres', 'pg_basebackup') }, () => {
  it('up and down: exit 1 at once with the one line, no retry, no dedupe advice; status and --dry-run read it', async () => {
    const primary = await startServer();
    await primary.sql('CREATE DATABASE app');
    await primary.sql(preFixSchema('public'), [], 'app');
    // Duplicate user_ids: the index migration's preflight would advise `tsm dedupe` if it ran first.
    await primary.sql(
      `INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
       SELECT 't-1', 'u-' || (g % 50), 'x', 'k1', 'active' FROM generate_series(1, 200) g`,
      [],
      'app',
    );
    const standby = await startStandby(primary);
    await waitFor('the rows reached the standby', async () => (await standby.sql('SELECT count(*)::int AS n FROM public.telegram_sessions', [], 'app')).rows[0].n === 200);
    const url = standby.url('app');

    for (const args of [['up'], ['up', '--schema', 'other'], ['down']]) {
      const start = await startCostMs(); // this moment's cost of a tsm start, measured again for each run
      const started = Date.now();
      const r = await migrate(url, args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(lastLine(r.stderr), STANDBY_LINE, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line only: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /dedupe|retry|unexpected/);
      assert.equal(r.stdout, '');
      assert.ok(Date.now() - started - start < 10_000, `no retries (a start that fails at once: ${Math.round(start)} ms)`);
    }

    const status = await migrate(url, ['status', '--json']);
    assert.equal(status.code, 1, status.stderr);
    assert.deepEqual(status.json().summary, { applied: 0, pending: SHIPPED.length, modified: 0, missing: 0 });

    const dry = await migrate(url, ['up', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^-- up would refuse before applying anything: read-only server \(hot standby\): connect to the primary$/m);
    const dryJson = (await migrate(url, ['up', '--dry-run', '--json'])).json();
    assert.equal(dryJson.refusal, 'read-only server (hot standby): connect to the primary');
    assert.equal(dryJson.read_only, true);

    // Migrated on the primary (after dedupe by hand), the standby's status follows.
    await primary.sql(`DELETE FROM public.telegram_sessions WHERE ctid NOT IN (SELECT min(ctid) FROM public.telegram_sessions GROUP BY user_id)`, [], 'app');
    const up = await migrate(primary.url('app'), ['up']);
    assert.equal(up.code, 0, up.stderr);
    await waitFor('tsm_migrations reached the standby', async () => {
      const r = await standby.sql(`SELECT to_regclass('public.tsm_migrations') IS NOT NULL AS ok`, [], 'app');
      return r.rows[0].ok && (await standby.sql('SELECT count(*)::int AS n FROM public.tsm_migrations', [], 'app')).rows[0].n === SHIPPED.length;
    });
    const after = await migrate(url, ['status']);
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stdout, /ok: up to date \(6 applied\)/);
  });
});

describe('tsm migrate on a primary whose sessions default to read-only', () => {
  it('ALTER ROLE … SET default_transaction_read_only = on: up and down exit 1 with its line; nothing changed', async () => {
    await db.sql(preFixSchema('ro_role'));
    await seed(db, 'ro_role', 10, 3);
    const role = await db.role('tsm_ro');
    await db.sql(`ALTER TABLE ro_role.telegram_sessions OWNER TO ${qi(role.name)}`);
    await db.sql(`GRANT USAGE, CREATE ON SCHEMA ro_role TO ${qi(role.name)}`);
    await db.sql(`ALTER ROLE ${qi(role.name)} SET default_transaction_read_only = on`);
    const before = await catalogSnapshot(db);
    for (const args of [['up', '--schema', 'ro_role'], ['down', '--schema', 'ro_role']]) {
      const r = await migrate(role.url, args);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(lastLine(r.stderr), DEFAULT_RO_LINE);
      assert.doesNotMatch(r.stderr, /dedupe|retry|unexpected/);
    }
    const dry = await migrate(role.url, ['up', '--dry-run', '--schema', 'ro_role']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^-- up would refuse before applying anything: read-only server \(default_transaction_read_only = on/m);
    assert.deepEqual(await catalogSnapshot(db), before);
    assert.deepEqual(await history(db, 'ro_role'), []);
  });

  it('ALTER DATABASE … SET default_transaction_read_only = on: the same line', async () => {
    await db.sql(preFixSchema('ro_db'));
    await db.sql(`ALTER DATABASE ${qi(db.name)} SET default_transaction_read_only = on`);
    try {
      const r = await migrate(db.url, ['up', '--schema', 'ro_db']);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(lastLine(r.stderr), DEFAULT_RO_LINE);
    } finally {
      await db.sql(`ALTER DATABASE ${qi(db.name)} RESET default_transaction_read_only`);
    }
    assert.deepEqual(await history(db, 'ro_db'), []);
  });
});
