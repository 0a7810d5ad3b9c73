/**
 * The hand-written Bind encoder (bindExecuteSync, src/store/upsert-call.ts) and the two ways
 * SessionStore sends an upsert:
 * - byte for byte the same buffer as pg's own serializer (pg.Connection's bind/execute/sync with
 *   pg's prepareValue), for ASCII, non-ASCII (2-, 3- and 4-byte UTF-8) and 1 MB values, NULLs;
 * - what PostgreSQL stores from it is byte-identical to what was sent (octet_length and the UTF-8
 *   bytes), and identical to what pg's own Query path stores;
 * - `preparedStatements: false`: no named statement on the connection, same results.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { SessionStore, type SessionStoreOptions } from '../src/index.js';
import { bindExecuteSync } from '../src/store/upsert-call.js';
import { createTestDatabase } from './helpers/db.js';
import { fixedSchema } from './helpers/fixtures.js';

const db = await createTestDatabase(import.meta.url);
await db.sql(fixedSchema('public') + 'CREATE SCHEMA empty_schema;');

/** pg's internals this test compares against (public in pg's CommonJS module, not in its typings). */
interface PgInternals {
  Connection: new (config: { stream: Writable }) => {
    bind(config: { statement: string; values: unknown[]; valueMapper: (v: unknown) => unknown }): void;
    execute(config: { portal: string; rows: number }): void;
    sync(): void;
  };
  utils: { prepareValue(v: unknown): unknown };
}
const pgi = pg as unknown as PgInternals;

/** What pg itself writes for Bind (unnamed portal, `statement`, text parameters) + Execute + Sync. */
function pgBindExecuteSync(statement: string, values: unknown[]): Buffer {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  const con = new pgi.Connection({ stream });
  con.bind({ statement, values, valueMapper: pgi.utils.prepareValue });
  con.execute({ portal: '', rows: 0 });
  con.sync();
  return Buffer.concat(chunks);
}

const MB = 1024 * 1024;
/** Values whose UTF-8 length differs from their JavaScript length. */
const SAMPLES: Record<string, string> = {
  ascii: 'tsm-test-key-1',
  'two-byte (Cyrillic)': 'сессия Телеграм ключ',
  'three-byte (CJK, €)': '会话字符串 € 鍵',
  'four-byte (emoji, surrogate pairs)': 'session 😀🔐 𝕋',
  '1 MB of ASCII': 'A'.repeat(MB),
  '1 MB of two-byte characters': 'ж'.repeat(MB / 2),
  '1 MB of four-byte characters': '😀'.repeat(MB / 4),
};

const stores: SessionStore[] = [];
after(() => Promise.all(stores.map((s) => s.close())));
function store(o: Partial<SessionStoreOptions>): SessionStore {
  // One connection: every save and every pg_prepared_statements probe below shares it.
  const s = new SessionStore({ connectionString: db.url, metrics: false, poolConfig: { max: 1 }, ...o });
  stores.push(s);
  return s;
}

let n = 0;
const uid = (tag: string): string => `enc-${tag}-${++n}`;

/** The stored session as UTF-8 bytes, read on a separate connection. */
async function storedBytes(userId: string): Promise<{ bytes: Buffer; octets: number; chars: number }> {
  const r = await db.sql(
    `SELECT convert_to(session_string_enc, 'UTF8') AS bytes, octet_length(session_string_enc) AS octets,
            length(session_string_enc) AS chars
       FROM telegram_sessions WHERE user_id = $1`,
    [userId],
  );
  assert.equal(r.rows.length, 1, `one row for ${userId}`);
  return r.rows[0] as { bytes: Buffer; octets: number; chars: number };
}

describe('bindExecuteSync: the same bytes as pg', () => {
  for (const [name, value] of Object.entries(SAMPLES)) {
    it(`${name} (${Buffer.byteLength(value)} bytes)`, () => {
      const values = ['tenant-ü', `user-${name}`, value, 'key-ключ', 'authorized', null, undefined];
      const ours = bindExecuteSync('tsm_upsert_0123456789abcdef', values);
      const theirs = pgBindExecuteSync('tsm_upsert_0123456789abcdef', values);
      assert.equal(ours.length, theirs.length, 'same length');
      assert.ok(ours.equals(theirs), 'byte-identical to pg');
    });
  }

  it('a non-ASCII statement name, numbers and an empty parameter list', () => {
    for (const [statement, values] of [
      ['stmt_ä😀', ['x', 42, 4.5, null]],
      ['', []],
      ['s', ['']],
    ] as [string, unknown[]][]) {
      assert.ok(bindExecuteSync(statement, values).equals(pgBindExecuteSync(statement, values)), `${statement}: ${JSON.stringify(values)}`);
    }
  });

  it('the Bind length field counts UTF-8 bytes, not JavaScript characters', () => {
    const value = '😀'.repeat(10); // 20 UTF-16 units, 40 bytes
    const buf = bindExecuteSync('s', [value]);
    assert.equal(buf[0], 0x42, "starts with 'B'");
    const bindLength = buf.readInt32BE(1);
    // length field + portal "\0" + "s\0" + 1 format count + 1 format + value count + (4 + 40) + result formats (2 + 2)
    assert.equal(bindLength, 4 + 1 + 2 + 2 + 2 + 2 + 4 + 40 + 2 + 2);
    assert.equal(buf.length, 1 + bindLength + 15, 'then Execute (10 bytes) and Sync (5 bytes)');
  });
});

describe('what PostgreSQL stores from it', () => {
  for (const via of ['function', 'statement'] as const) {
    it(`via ${via}: non-ASCII and 1 MB values stored byte-identical, by the prepared (hand-encoded) path and by pg's own`, async () => {
      const prepared = store({ via });
      const unprepared = store({ via, preparedStatements: false });
      for (const [name, value] of Object.entries(SAMPLES)) {
        const expected = Buffer.from(value, 'utf8');
        const ids: string[] = [];
        for (const [path, s] of [
          ['prepared', prepared],
          ['unprepared', unprepared],
        ] as const) {
          const userId = uid(`${via}-${path}`);
          const r = await s.save({ tenantId: 'tenant-ü', userId, sessionStringEnc: value, keyId: 'key-ключ', status: 'authorized' });
          assert.ok(r.ok, `${path} ${name}: ${JSON.stringify(r)}`);
          const got = await storedBytes(userId);
          assert.equal(got.octets, expected.length, `${path} ${name}: octet_length`);
          assert.equal(got.chars, [...value].length, `${path} ${name}: length in characters`);
          assert.ok(got.bytes.equals(expected), `${path} ${name}: the stored UTF-8 bytes are the ones sent`);
          ids.push(userId);
        }
        const same = await db.sql(
          `SELECT a.session_string_enc = b.session_string_enc AND a.tenant_id = b.tenant_id AND a.key_id = b.key_id AS same
             FROM telegram_sessions a, telegram_sessions b WHERE a.user_id = $1 AND b.user_id = $2`,
          ids,
        );
        assert.equal(same.rows[0].same, true, `${name}: both paths stored the same row`);
      }
      const names = (await db.sql(`SELECT key_id FROM telegram_sessions WHERE tenant_id = 'tenant-ü' GROUP BY key_id`)).rows;
      assert.deepEqual(names, [{ key_id: 'key-ключ' }], 'non-ASCII key_id stored as sent');
    });
  }
});

describe('preparedStatements: false', () => {
  for (const via of ['function', 'statement'] as const) {
    it(`via ${via}: insert then update keep one row and its id; no named statement on the connection`, async () => {
      for (const prepared of [true, false]) {
        const pool = new pg.Pool({ connectionString: db.url, max: 1 });
        pool.on('error', () => {});
        const s = new SessionStore({ pool, via, metrics: false, preparedStatements: prepared });
        try {
          const userId = uid(`ps-${via}-${prepared}`);
          const r1 = await s.save({ tenantId: 't-ps', userId, sessionStringEnc: 'первая-сессия', keyId: 'k1' });
          const r2 = await s.save({ tenantId: 't-ps', userId, sessionStringEnc: 'вторая-сессия', keyId: 'k2', status: 'authorized' });
          assert.ok(r1.ok && r2.ok, JSON.stringify([r1, r2]));
          assert.equal(r2.id, r1.id, 'the update returns the same id');
          const rows = (await db.sql('SELECT session_string_enc, key_id, status FROM telegram_sessions WHERE user_id = $1', [userId])).rows;
          assert.deepEqual(rows, [{ session_string_enc: 'вторая-сессия', key_id: 'k2', status: 'authorized' }]);
          // The pool's one connection is the one the saves used.
          const named = (await pool.query<{ name: string }>(`SELECT name FROM pg_prepared_statements WHERE name LIKE 'tsm_upsert_%'`)).rows;
          if (prepared) assert.equal(named.length, 1, 'the default path prepares one named statement');
          else assert.deepEqual(named, [], 'no named statement: safe behind a transaction-mode pooler');
        } finally {
          await s.close();
          await pool.end();
        }
      }
    });
  }

  it('a failure is still classified (no table: 42P01; no function: 42883 → missing_upsert_function)', async () => {
    const noTable = store({ schema: 'empty_schema', via: 'statement', preparedStatements: false });
    const r1 = await noTable.save({ tenantId: 't', userId: uid('fail'), sessionStringEnc: 's', keyId: null });
    assert.equal(r1.ok, false);
    assert.equal(!r1.ok && r1.sqlstate, '42P01');
    const noFunction = store({ schema: 'empty_schema', via: 'function', preparedStatements: false });
    const r2 = await noFunction.save({ tenantId: 't', userId: uid('fail'), sessionStringEnc: 's', keyId: null });
    assert.equal(!r2.ok && r2.code, 'missing_upsert_function');
  });
});
