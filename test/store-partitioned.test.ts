/**
 * test-write, bench and SessionStore on a telegram_sessions partitioned by HASH or LIST on user_id
 * with its unique index (issue 11), built by hand here (migrate up builds it elsewhere). A table
 * partitioned by user_id cannot have PRIMARY KEY (id) (a unique index must contain the partition
 * key), so id is NOT NULL without a key. ON CONFLICT (user_id) never has to move a row between
 * partitions: the key is the partition key. A LIST table without a DEFAULT partition rejects
 * user ids it does not list (23514): test-write says so and how to fix it.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { SessionStore } from '../src/index.js';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { FIXED_COLUMNS, fixedFunction } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);

function partitioned(schema: string, layout: 'hash' | 'list' | 'list-no-default'): string {
  const t = `${schema}.telegram_sessions`;
  const parts =
    layout === 'hash'
      ? Array.from({ length: 4 }, (_, i) => `CREATE TABLE ${schema}.p${i} PARTITION OF ${t} FOR VALUES WITH (MODULUS 4, REMAINDER ${i});`)
      : [
          `CREATE TABLE ${schema}.p_listed PARTITION OF ${t} FOR VALUES IN ('1', '2', '3');`,
          `CREATE TABLE ${schema}.p_pending PARTITION OF ${t} FOR VALUES IN (NULL);`,
          ...(layout === 'list' ? [`CREATE TABLE ${schema}.p_rest PARTITION OF ${t} DEFAULT;`] : []),
        ];
  return `CREATE SCHEMA ${schema};
    CREATE TABLE ${t} (${FIXED_COLUMNS}) PARTITION BY ${layout === 'hash' ? 'HASH' : 'LIST'} (user_id);
    ${parts.join('\n')}
    CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON ${t} (user_id) WHERE user_id IS NOT NULL;
    ${fixedFunction(schema)}`;
}

await db.sql(partitioned('by_hash', 'hash') + partitioned('by_list', 'list') + partitioned('list_closed', 'list-no-default'));

const stores: SessionStore[] = [];
after(() => Promise.all(stores.map((s) => s.close())));

for (const schema of ['by_hash', 'by_list']) {
  describe(`partitioned by ${schema === 'by_hash' ? 'HASH' : 'LIST (with a DEFAULT partition)'} on user_id`, () => {
    for (const via of ['function', 'statement']) {
      it(`test-write --via ${via}: exit 0, the race leaves one row per user, rows removed`, async () => {
        const r = await runTsm(['test-write', '--json', '-d', db.url, '--schema', schema, '--via', via, '--lengths', '68,800,65536', '--rounds', '10']);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const j = r.json();
        assert.equal(j.ok, true);
        assert.equal(j.race.rows_left, 1);
        const left = await db.sql(`SELECT count(*)::int AS n FROM ${schema}.telegram_sessions WHERE tenant_id = 'tsm-test'`);
        assert.equal(left.rows[0].n, 0);
      });
    }

    it('bench: no errors, rows removed', async () => {
      const r = await runTsm(['bench', '--json', '-d', db.url, '--schema', schema, '--clients', '3', '--duration', '1', '--users', '100']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(r.json().errors, {});
      const left = await db.sql(`SELECT count(*)::int AS n FROM ${schema}.telegram_sessions WHERE tenant_id = 'tsm-bench'`);
      assert.equal(left.rows[0].n, 0);
    });

    it('SessionStore: integer and text ids land in their partitions; an update keeps the id', async () => {
      const s = new SessionStore({ connectionString: db.url, schema, metrics: false });
      stores.push(s);
      for (const userId of [1, 2n, '3', 7_000_000_001, 'u-free']) {
        const a = await s.save({ tenantId: 'acme', userId, sessionStringEnc: 'first', keyId: 'k' });
        const b = await s.save({ tenantId: 'acme', userId, sessionStringEnc: 'second', keyId: 'k' });
        assert.ok(a.ok && b.ok && a.id === b.id, `${String(userId)}: ${JSON.stringify([a, b])}`);
        const rows = await db.sql(`SELECT tableoid::regclass::text AS part, session_string_enc FROM ${schema}.telegram_sessions WHERE user_id = $1`, [String(userId)]);
        assert.equal(rows.rowCount, 1);
        assert.equal(rows.rows[0].session_string_enc, 'second');
        if (schema === 'by_list') assert.equal(rows.rows[0].part, ['1', '2', '3'].includes(String(userId)) ? 'by_list.p_listed' : 'by_list.p_rest');
      }
    });
  });
}

describe('LIST on user_id without a DEFAULT partition', () => {
  it('test-write: check_violation (23514) and a remedy naming the DEFAULT partition', async () => {
    const r = await runTsm(['test-write', '-d', db.url, '--schema', 'list_closed', '--lengths', '68', '--rounds', '1', '--concurrency', '2']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /database_error: length 68: 23514: /);
    assert.match(r.stdout, /remedy: .*a LIST-partitioned table needs a DEFAULT partition for user ids it does not list/);
  });
});
