/**
 * Partition keys that make a unique user_id impossible (issue 11): RANGE on created_at, HASH on
 * tenant_id, a key with more columns, an expression, a sub-partition keyed on created_at.
 * `tsm migrate up` refuses before changing anything (not even 0001–0003, not even the history
 * table): exit 1, one line naming the key and the two ways out; the error's code is `partition_key`
 * (the --json error document, and the engine's FailError) with the key; --dry-run shows that up
 * would stop (exit 0, nothing changed).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { FailError } from '../src/errors.js';
import { runMigrations } from '../src/migrate/run.js';
import { createTestDatabase } from './helpers/db.js';
import { catalogSnapshot, lastLine, migrate } from './helpers/migrate.js';
import { partitionedPreFix, rowsDigest, seedPartitioned, type Layout } from './helpers/partitioned.js';

const db = await createTestDatabase(import.meta.url);

const OPTIONS =
  'options: re-partition by user_id (PARTITION BY HASH (user_id) or LIST (user_id)), or keep this table and keep user_id unique in a separate unpartitioned lookup table (user_id → session id)';
const MUST_CONTAIN =
  'a unique index on a partitioned table must contain every partition-key column, so user_id alone cannot be unique there (with user_id plus the key columns it would only be unique per partition)';

/** `up` through the engine, as an application would call it: the error it throws. */
async function engineError(schema: string): Promise<FailError> {
  const clients: pg.Client[] = [];
  try {
    await runMigrations(
      {
        schema,
        connect: async () => {
          const c = new pg.Client({ connectionString: db.url, application_name: 'tsm' });
          clients.push(c);
          await c.connect();
          return c;
        },
        log: () => {},
      },
      { direction: 'up', count: undefined, dir: undefined, lockTimeoutMs: 5000, indexLockTimeoutMs: 120_000, lockRetries: 12, lockWaitMs: 10_000, allowModified: false },
    );
  } catch (err) {
    assert.ok(err instanceof FailError, String(err));
    return err;
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
  throw new Error('up did not refuse');
}

const cases: { layout: Layout; schema: string; line: string; key: string; strategy: string }[] = [
  {
    layout: 'range-created',
    schema: 'by_time',
    line: `by_time.telegram_sessions is partitioned by RANGE (created_at): ${MUST_CONTAIN}; ${OPTIONS}`,
    key: 'RANGE (created_at)',
    strategy: 'RANGE',
  },
  {
    layout: 'hash-tenant',
    schema: 'by_tenant',
    line: `by_tenant.telegram_sessions is partitioned by HASH (tenant_id): ${MUST_CONTAIN}; ${OPTIONS}`,
    key: 'HASH (tenant_id)',
    strategy: 'HASH',
  },
  {
    layout: 'hash-user-tenant',
    schema: 'by_both',
    line: `by_both.telegram_sessions is partitioned by HASH (user_id, tenant_id): ${MUST_CONTAIN}; ${OPTIONS}`,
    key: 'HASH (user_id, tenant_id)',
    strategy: 'HASH',
  },
  {
    layout: 'hash-sub-range',
    schema: 'sub_time',
    line: `partition sub_time.telegram_sessions_p1 of sub_time.telegram_sessions is itself partitioned by RANGE (created_at): ${MUST_CONTAIN}; ${OPTIONS}`,
    key: 'RANGE (created_at)',
    strategy: 'RANGE',
  },
];

describe('tsm migrate up refuses partition keys that make a unique user_id impossible', () => {
  for (const c of cases) {
    it(`${c.layout}: exit 1, one line with the key and the options, the catalog unchanged; the engine's code is partition_key`, async () => {
      await db.sql(partitionedPreFix(c.schema, c.layout, 2));
      await seedPartitioned(db, c.schema, 50);
      const rows = await rowsDigest(db, c.schema);
      const before = await catalogSnapshot(db);

      const r = await migrate(db.url, ['up', '--schema', c.schema]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(lastLine(r.stderr), `tsm: 0004_user_id_unique_index: ${c.line}; nothing was applied`);
      assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('tsm: ')).length, 1, 'one error line');
      assert.deepEqual(await catalogSnapshot(db), before, 'nothing changed: no history table, no column, no index');

      const j = await migrate(db.url, ['up', '--schema', c.schema, '--json']);
      assert.equal(j.code, 1, j.stderr);
      const doc = j.json();
      assert.equal(doc.ok, false);
      assert.deepEqual(doc.error, { code: 'partition_key', message: `0004_user_id_unique_index: ${c.line}; nothing was applied` });
      assert.deepEqual([doc.partition_key.key, doc.partition_key.strategy], [c.key, c.strategy]);

      const dry = await migrate(db.url, ['up', '--dry-run', '--schema', c.schema]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.ok(dry.stdout.includes(`-- up would refuse before applying anything: 0004_user_id_unique_index: ${c.line}`), dry.stdout);

      const err = await engineError(c.schema);
      assert.equal(err.code, 'partition_key');
      assert.equal(err.exitCode, 1);
      const data = err.data as { partition_key: { key: string; strategy: string; options: string[] } };
      assert.equal(data.partition_key.key, c.key);
      assert.equal(data.partition_key.strategy, c.strategy);
      assert.equal(data.partition_key.options.length, 2);
      assert.deepEqual(await catalogSnapshot(db), before, 'still nothing changed');
      assert.deepEqual(await rowsDigest(db, c.schema), rows);
    });
  }

  it('an expression key (LIST (lower(user_id))): refused the same way', async () => {
    await db.sql(`CREATE SCHEMA expr;
      CREATE TABLE expr.telegram_sessions (id uuid NOT NULL DEFAULT gen_random_uuid(), tenant_id varchar(255) NOT NULL, user_id varchar(255),
        session_string_enc text, key_id varchar(64), status varchar(20) NOT NULL DEFAULT 'pending',
        created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()) PARTITION BY LIST (lower(user_id));
      CREATE TABLE expr.rest PARTITION OF expr.telegram_sessions DEFAULT;`);
    const before = await catalogSnapshot(db);
    const r = await migrate(db.url, ['up', '--schema', 'expr']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(lastLine(r.stderr), `tsm: 0004_user_id_unique_index: expr.telegram_sessions is partitioned by LIST (lower((user_id)::text)): ${MUST_CONTAIN}; ${OPTIONS}; nothing was applied`);
    assert.deepEqual(await catalogSnapshot(db), before);
  });
});
