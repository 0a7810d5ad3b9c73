/**
 * `--schema` takes any identifier PostgreSQL accepts (issue 8): quotes, spaces, unicode, up to 63
 * bytes. Every migrate path (up, dry-run, status, down, create) works in a schema named `it's "tg"`;
 * a name with a control character, an empty one, or one over 63 bytes is a usage error (exit 2,
 * one line, nothing on stdout, before connecting).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';
import { doctor } from './helpers/doctor.js';
import { SHIPPED, history, migrate, qi } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);
const SCHEMA = `it's "tg"`;

describe(`--schema ${SCHEMA}`, () => {
  it('dry-run, up, status, the function, down, up again: all in that schema', async () => {
    const args = ['--schema', SCHEMA];
    const dry = await migrate(db.url, ['up', '--dry-run', '--json', ...args]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.ok(dry.json().setup.includes(`CREATE SCHEMA IF NOT EXISTS "it's ""tg""";`), dry.stdout);

    const up = await migrate(db.url, ['up', ...args]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /^tsm migrate up {2}\S+ {2}· {2}schema it's "tg"$/m);
    assert.deepEqual(await history(db, SCHEMA), SHIPPED);

    const st = await migrate(db.url, ['status', '--json', ...args]);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(st.json().schema, SCHEMA);
    assert.equal(st.json().up_to_date, true);

    const id = (await db.sql(`SELECT ${qi(SCHEMA)}.upsert_telegram_session('t-1', 'u-1', 's', 'k1') AS id`)).rows[0].id;
    assert.match(id, /^[0-9a-f-]{36}$/);
    const doc = await doctor(db.url, args);
    assert.deepEqual(doc.report.checks.filter((c) => c.status !== 'ok').map((c) => c.id), []);

    const down = await migrate(db.url, ['down', '5', ...args]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await history(db, SCHEMA), ['0001_create_table']);
    const again = await migrate(db.url, ['up', ...args]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(await history(db, SCHEMA), SHIPPED);
  });

  it('a suggested command quotes the schema for a POSIX shell', async () => {
    // The refusal of `up` when an applied file changed names `tsm migrate status --schema …`.
    await db.sql(`UPDATE ${qi(SCHEMA)}.tsm_migrations SET checksum = repeat('0', 64) WHERE name = '0002_widen_session_columns'`);
    const r = await migrate(db.url, ['up', '--schema', SCHEMA]);
    await db.sql(`UPDATE ${qi(SCHEMA)}.tsm_migrations SET checksum = NULL WHERE name = '0002_widen_session_columns'`);
    assert.equal(r.code, 1);
    const cmd = /`(tsm migrate status --schema [^`]+)`/.exec(r.stderr)?.[1];
    assert.ok(cmd, r.stderr);
    const word = cmd.slice('tsm migrate status --schema '.length);
    assert.equal(execFileSync('/bin/sh', ['-c', `printf %s ${word}`], { encoding: 'utf8' }), SCHEMA);
  });

  it('the longest name (63 bytes of UTF-8) works; 64 bytes is a usage error', async () => {
    const longest = 'ü'.repeat(31) + 'x';
    assert.equal(Buffer.byteLength(longest), 63);
    const r = await migrate(db.url, ['up', '--schema', longest]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await history(db, longest), SHIPPED);
    const tooLong = 'ü'.repeat(32);
    const bad = await migrate(db.url, ['status', '--schema', tooLong]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, `tsm: --schema: "${tooLong}" is 64 bytes long; PostgreSQL identifiers hold at most 63 bytes\n`);
  });

  it('control characters, empty: exit 2, one line, nothing on stdout, before connecting (every command)', async () => {
    const cases: [string, RegExp][] = [
      ['a\nb', /^tsm: --schema: "a\\nb" contains a control character \(U\+000A\)\n$/],
      ['tab\there', /^tsm: --schema: "tab\\there" contains a control character \(U\+0009\)\n$/],
      ['esc\u001b[31m', /^tsm: --schema: "esc\\u001b\[31m" contains a control character \(U\+001B\)\n$/],
      ['c1\u0085', /contains a control character \(U\+0085\)\n$/],
      ['', /^tsm: --schema: "" is empty\n$/],
    ];
    const commands = [['migrate', 'up'], ['migrate', 'up', '--dry-run'], ['migrate', 'down'], ['migrate', 'status'], ['doctor'], ['test-write'], ['dedupe']];
    for (const [schema, message] of cases) {
      for (const command of commands) {
        const r = await runTsm([...command, '--schema', schema, '-d', 'postgres://nobody@127.0.0.1:1/none']);
        assert.equal(r.code, 2, `${command.join(' ')} --schema ${JSON.stringify(schema)}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(r.stdout, '');
      }
    }
  });

  it('migrate create works with any --schema (it touches no database)', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tsm-create-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const r = await migrate(db.url, ['create', 'add_x', '--schema', SCHEMA, '--migrations-dir', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.json().name, /^\d{4}_add_x$/);
    const bad = await migrate(db.url, ['create', 'a\nb', '--migrations-dir', dir]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, `tsm: migration name "a\\nb": use letters, digits, '_' and '-' (e.g. add_device_column)\n`);
  });
});
