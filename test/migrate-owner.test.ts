/**
 * Who may migrate (issue 10, round-1 leftover). A role that does not own telegram_sessions used to
 * get as far as creating tsm_migrations (owned by itself) before the first ALTER failed; the real
 * owner's next `up` then died with "unexpected error: permission denied for table tsm_migrations".
 * Now the non-owner is refused in one line before anything is created, and a history table the
 * current role cannot use is named with its owner, in one line.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { SHIPPED, catalogSnapshot, history, lastLine, migrate, qi } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);

describe('tsm migrate and the owner of the table', () => {
  it('a role that does not own the table: up refuses in one line before creating anything; the owner then migrates', async () => {
    await db.sql(preFixSchema('owned'));
    const owner = await db.role('tsm_owner');
    const other = await db.role('tsm_other');
    await db.sql(`ALTER SCHEMA owned OWNER TO ${qi(owner.name)}`);
    await db.sql(`ALTER TABLE owned.telegram_sessions OWNER TO ${qi(owner.name)}`);
    await db.sql(`GRANT USAGE, CREATE ON SCHEMA owned TO ${qi(other.name)}`);
    await db.sql(`GRANT SELECT, INSERT, UPDATE ON owned.telegram_sessions TO ${qi(other.name)}`);
    const before = await catalogSnapshot(db);
    const r = await migrate(other.url, ['up', '--schema', 'owned']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      lastLine(r.stderr),
      `tsm: role ${other.name} does not own owned.telegram_sessions (its owner is ${owner.name}): migrations alter the table, so run them as ${owner.name} or a member of it; nothing was changed`,
    );
    assert.doesNotMatch(r.stderr, /unexpected/);
    const dry = await migrate(other.url, ['up', '--dry-run', '--schema', 'owned', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.json().refusal, new RegExp(`^role ${other.name} does not own owned\\.telegram_sessions`));
    assert.deepEqual(await catalogSnapshot(db), before, 'no tsm_migrations, nothing');
    const up = await migrate(owner.url, ['up', '--schema', 'owned']);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(await history(db, 'owned'), SHIPPED);
  });

  it('a tsm_migrations the current role cannot read: up and status name its owner in one line', async () => {
    await db.sql(preFixSchema('legacy'));
    const owner = await db.role('tsm_owner2');
    const stranger = await db.role('tsm_stranger');
    await db.sql(`GRANT USAGE, CREATE ON SCHEMA legacy TO ${qi(owner.name)}, ${qi(stranger.name)}`);
    await db.sql(`ALTER TABLE legacy.telegram_sessions OWNER TO ${qi(owner.name)}`);
    // As an earlier run by another role left it.
    await db.sql(`CREATE TABLE legacy.tsm_migrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamptz NOT NULL, checksum text)`);
    await db.sql(`ALTER TABLE legacy.tsm_migrations OWNER TO ${qi(stranger.name)}`);
    const before = await catalogSnapshot(db);
    const expected = `tsm: role ${owner.name} cannot read legacy.tsm_migrations (its owner is ${stranger.name}): run tsm as ${stranger.name}, or as ${stranger.name} run ALTER TABLE legacy.tsm_migrations OWNER TO ${owner.name}`;
    const up = await migrate(owner.url, ['up', '--schema', 'legacy']);
    assert.equal(up.code, 1, up.stderr);
    assert.equal(lastLine(up.stderr), `${expected}; nothing was changed`);
    const status = await migrate(owner.url, ['status', '--schema', 'legacy']);
    assert.equal(status.code, 1, status.stderr);
    assert.equal(lastLine(status.stderr), expected);
    assert.deepEqual(await catalogSnapshot(db), before);
  });

  it('status names --schema in its hint', async () => {
    const r = await migrate(db.url, ['status', '--schema', 'hint me']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /`tsm migrate up --schema 'hint me'` applies the pending ones\n$/);
  });
});
