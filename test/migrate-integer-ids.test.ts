/**
 * Integer user ids (issue 8): Telethon's `me.id` is an int, and psycopg2 / pg send it as integer or
 * bigint, for which 0005 has no function (42883). After 0006 a call with an integer or bigint user
 * id works through the function (the bigint overload) and through the documented
 * `INSERT … ON CONFLICT (user_id) WHERE user_id IS NOT NULL` statement, stores the id as text, and
 * a call with string literals or untyped parameters is not ambiguous (PostgreSQL prefers the
 * string category for unknown-type arguments).
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type pg from 'pg';
import { createTestDatabase } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';
import { migrate } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);
let c: pg.Client;

/** The documented statement applications send directly, with the user id's type given explicitly. */
const statement = (userIdType: string): string => `
INSERT INTO ints.telegram_sessions AS t (tenant_id, user_id, session_string_enc, key_id, status)
VALUES ($1, $2::${userIdType}, $3, $4, 'active')
ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE
SET session_string_enc = EXCLUDED.session_string_enc, key_id = EXCLUDED.key_id, status = EXCLUDED.status, updated_at = now()
WHERE t.tenant_id = EXCLUDED.tenant_id
RETURNING id`;

async function rowsOf(user: string): Promise<{ id: string; session_string_enc: string }[]> {
  return (await c.query(`SELECT id, session_string_enc FROM ints.telegram_sessions WHERE user_id = $1 ORDER BY id`, [user])).rows;
}

async function failure(sql: string, values: unknown[] = []): Promise<string | undefined> {
  return c.query(sql, values).then(
    () => undefined,
    (e: unknown) => (e as { code?: string }).code ?? String(e),
  );
}

describe('integer user ids', () => {
  before(async () => {
    await db.sql(preFixSchema('ints'));
    const r = await migrate(db.url, ['up', '--schema', 'ints']);
    assert.equal(r.code, 0, r.stderr);
    c = await db.client();
  });

  it('0005 alone (the issue): an integer user id finds no function, 42883', async () => {
    await db.sql(preFixSchema('old'));
    assert.equal((await migrate(db.url, ['up', '5', '--schema', 'old'])).code, 0);
    assert.equal(await failure(`SELECT old.upsert_telegram_session('t-1', 12345, 's', 'k1')`), '42883');
  });

  it('the function with an integer literal, an integer and a bigint parameter: insert, then update in place; stored as text', async () => {
    const first = (await c.query(`SELECT ints.upsert_telegram_session('t-1', 12345, 'one', 'k1') AS id`)).rows[0].id;
    const second = (await c.query(`SELECT ints.upsert_telegram_session($1, $2::integer, $3, $4) AS id`, ['t-1', 12345, 'two', 'k1'])).rows[0].id;
    const third = (await c.query(`SELECT ints.upsert_telegram_session($1, $2::bigint, $3, $4, $5, $6, $7) AS id`, ['t-1', '12345', 'three', 'k2', 'active', null, null])).rows[0].id;
    assert.equal(second, first);
    assert.equal(third, first);
    assert.deepEqual(await rowsOf('12345'), [{ id: first, session_string_enc: 'three' }]);
  });

  it('a bigint beyond 2^53 keeps every digit', async () => {
    const big = '9007199254740993';
    await c.query(`SELECT ints.upsert_telegram_session('t-1', $1::bigint, 'big', 'k1')`, [big]);
    assert.equal((await rowsOf(big)).length, 1);
  });

  it('string calls are not ambiguous: literals, untyped parameters, text, and NULL resolve to the varchar version', async () => {
    const a = (await c.query(`SELECT ints.upsert_telegram_session('t-1', '777', 'lit', 'k1') AS id`)).rows[0].id;
    const b = (await c.query(`SELECT ints.upsert_telegram_session($1, $2, $3, $4) AS id`, ['t-1', '777', 'param', 'k1'])).rows[0].id;
    const t = (await c.query(`SELECT ints.upsert_telegram_session('t-1', '777'::text, 'text', 'k1') AS id`)).rows[0].id;
    const n = (await c.query(`SELECT ints.upsert_telegram_session('t-1', 777, 'int', 'k1') AS id`)).rows[0].id;
    assert.deepEqual(new Set([a, b, t, n]).size, 1, 'one user, one row, whatever the type of the id');
    assert.deepEqual(await rowsOf('777'), [{ id: a, session_string_enc: 'int' }]);
    // A NULL user id: 23502 (not_null_violation), not 42725 (ambiguous function).
    assert.equal(await failure(`SELECT ints.upsert_telegram_session('t-1', NULL, 's', 'k1')`), '23502');
    assert.equal(await failure(`SELECT ints.upsert_telegram_session('t-1', NULL::bigint, 's', 'k1')`), '23502');
    assert.equal(await failure(`SELECT ints.upsert_telegram_session($1, $2, $3, $4)`, ['t-1', null, 's', 'k1']), '23502');
  });

  it('the bigint overload keeps the tenant guard: another tenant is TSM01, the row unchanged', async () => {
    await c.query(`SELECT ints.upsert_telegram_session('tenant-a', 5550001, 'a', 'ka')`);
    assert.equal(await failure(`SELECT ints.upsert_telegram_session('tenant-b', 5550001, 'b', 'kb')`), 'TSM01');
    assert.deepEqual((await rowsOf('5550001')).map((r) => r.session_string_enc), ['a']);
  });

  it('the documented INSERT … ON CONFLICT statement with integer and bigint user ids', async () => {
    for (const type of ['integer', 'bigint']) {
      const user = type === 'integer' ? 424242 : 8_000_000_001;
      const id1 = (await c.query(statement(type), ['t-1', user, `${type}-1`, 'k1'])).rows[0].id;
      const id2 = (await c.query(statement(type), ['t-1', user, `${type}-2`, 'k1'])).rows[0].id;
      assert.equal(id2, id1, `${type}: the second save updates the first row`);
      assert.deepEqual(await rowsOf(String(user)), [{ id: id1, session_string_enc: `${type}-2` }]);
    }
    const literal = await c.query(
      `INSERT INTO ints.telegram_sessions AS t (tenant_id, user_id, session_string_enc, key_id) VALUES ('t-1', 31337, 'lit', 'k1')
       ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE SET session_string_enc = EXCLUDED.session_string_enc
       WHERE t.tenant_id = EXCLUDED.tenant_id RETURNING id`,
    );
    assert.equal(literal.rowCount, 1);
    assert.equal((await rowsOf('31337')).length, 1);
  });
});
