/**
 * tsm migrate status and checksums (issue 3), in a temp copy of the migrations folder: applied
 * (with time) / pending / modified / missing, exit 1 unless all applied; `up` refuses when an
 * applied file changed unless --allow-modified; `tsm migrate create` adds a TypeScript migration
 * that `up` applies.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestDatabase } from './helpers/db.js';
import { doctor } from './helpers/doctor.js';
import { SHIPPED, history, lastLine, migrate } from './helpers/migrate.js';

const db = await createTestDatabase(import.meta.url);
const shippedDir = fileURLToPath(new URL('../migrations/', import.meta.url)); // dist/migrations
const dir = mkdtempSync(join(tmpdir(), 'tsm-migrations-'));
after(() => rmSync(dir, { recursive: true, force: true }));
for (const f of readdirSync(shippedDir).filter((f) => f.endsWith('.js'))) copyFileSync(join(shippedDir, f), join(dir, f));
writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');

const sha = (file: string): string => createHash('sha256').update(readFileSync(join(dir, file), 'utf8')).digest('hex');
const status = (extra: string[] = []) => migrate(db.url, ['status', '--json', '--migrations-dir', dir, ...extra]);
const states = async (): Promise<[string, string][]> => (await status()).json().migrations.map((m: { name: string; state: string }) => [m.name, m.state]);

describe('tsm migrate status and checksums', () => {
  it('no history yet: all pending, exit 1', async () => {
    const r = await status();
    assert.equal(r.code, 1);
    const j = r.json();
    assert.equal(j.table, false);
    assert.deepEqual(j.summary, { applied: 0, pending: 6, modified: 0, missing: 0 });
    assert.equal(j.up_to_date, false);
  });

  it('up 3: three applied with their time and checksum, three pending, exit 1; human table', async () => {
    const t0 = Date.now();
    const up = await migrate(db.url, ['up', '3', '--migrations-dir', dir]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /ok: 3 migrations applied, 3 still pending/);
    const r = await status();
    assert.equal(r.code, 1);
    const j = r.json();
    assert.deepEqual(j.migrations.map((m: { state: string }) => m.state), ['applied', 'applied', 'applied', 'pending', 'pending', 'pending']);
    for (const m of j.migrations.slice(0, 3)) {
      assert.ok(Math.abs(Date.parse(m.applied_at) - t0) < 60_000, `${m.name} applied_at ${m.applied_at}`);
      assert.equal(m.applied_checksum, sha(`${m.name}.js`), 'the SHA-256 of the file as applied');
    }
    assert.equal(j.migrations[3].applied_at, null);
    const human = await migrate(db.url, ['status', '--migrations-dir', dir]);
    assert.equal(human.code, 1);
    assert.match(human.stdout, /│ 0001_create_table +│ applied │ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC │/);
    assert.match(human.stdout, /│ 0005_upsert_function +│ pending │ +│/);
    assert.match(human.stdout, /fail: 3 applied, 3 pending; `tsm migrate up` applies the pending ones\n$/);
  });

  it('an applied file edited: status says modified (exit 1); up refuses, nothing applied; --allow-modified runs', async () => {
    const file = join(dir, '0002_widen_session_columns.js');
    const original = readFileSync(file, 'utf8');
    appendFileSync(file, '\n// edited after it was applied\n');
    assert.deepEqual((await states())[1], ['0002_widen_session_columns', 'modified']);
    assert.equal((await status()).code, 1);

    const r = await migrate(db.url, ['up', '--migrations-dir', dir]);
    assert.equal(r.code, 1);
    assert.match(
      lastLine(r.stderr),
      /^tsm: refusing to migrate: an applied migration was changed since applied: 0002_widen_session_columns \(applied sha256 [0-9a-f]{12}…, file now [0-9a-f]{12}…\); `tsm migrate status` lists them; --allow-modified runs anyway; nothing was applied$/,
    );
    assert.deepEqual(await history(db), SHIPPED.slice(0, 3));
    const dry = await migrate(db.url, ['up', '--dry-run', '--migrations-dir', dir]);
    assert.match(dry.stdout, /up would refuse before applying anything: applied migrations changed since applied: 0002_widen_session_columns/);

    const forced = await migrate(db.url, ['up', '--allow-modified', '--migrations-dir', dir]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /tsm migrate: warning: changed since applied: 0002_widen_session_columns/);
    assert.deepEqual(await history(db), SHIPPED);
    assert.deepEqual((await states())[1], ['0002_widen_session_columns', 'modified'], 'the record still describes what was applied');

    writeFileSync(file, original.replace(/\n/g, '\r\n'));
    const back = await status();
    assert.equal(back.code, 0, 'restored (CRLF line endings do not count as a change)');
    assert.equal(back.json().up_to_date, true);
  });

  it('an applied file removed: missing, exit 1', async () => {
    renameSync(join(dir, '0006_harden_upsert_function.js'), join(dir, '.0006_harden_upsert_function.js.bak'));
    try {
      const r = await status();
      assert.equal(r.code, 1);
      assert.deepEqual(r.json().migrations.at(-1), {
        name: '0006_harden_upsert_function',
        state: 'missing',
        applied_at: r.json().migrations.at(-1).applied_at,
        applied_checksum: r.json().migrations.at(-1).applied_checksum,
        checksum: null,
      });
      const d = await migrate(db.url, ['down', '--migrations-dir', dir]);
      assert.equal(d.code, 1);
      assert.match(lastLine(d.stderr), /^tsm: cannot revert 0006_harden_upsert_function: no such migration file in .*; nothing was reverted$/);
    } finally {
      renameSync(join(dir, '.0006_harden_upsert_function.js.bak'), join(dir, '0006_harden_upsert_function.js'));
    }
    assert.equal((await status()).code, 0);
  });

  it('migrate create: a numbered, empty TypeScript migration that up applies; doctor flags it as not shipped', async () => {
    const c = await migrate(db.url, ['create', 'add_device_column', '--migrations-dir', dir, '--json']);
    assert.equal(c.code, 0, c.stderr);
    const created = c.json();
    assert.equal(created.name, '0007_add_device_column');
    assert.equal(created.path, join(dir, '0007_add_device_column.ts'));
    assert.equal(created.has_shipped, true);
    const text = readFileSync(created.path, 'utf8');
    assert.match(text, /export async function up\(pgm: MigrationBuilder, \.\.\.\[ctx\]: \[MigrationContext\?\]\): Promise<void>/);
    assert.match(text, /export async function down\(pgm: MigrationBuilder, \.\.\.\[ctx\]: \[MigrationContext\?\]\): Promise<void>/);
    assert.doesNotMatch(text, /tsm\.schema/, 'the schema comes from the context, not a session setting');
    assert.deepEqual((await states()).at(-1), ['0007_add_device_column', 'pending']);
    const up = await migrate(db.url, ['up', '--migrations-dir', dir, '--json']);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(up.json().steps.map((s: { name: string }) => s.name), ['0007_add_device_column']);
    assert.equal((await status()).code, 0);
    // Against the migrations shipped with tsm, 0007 is applied but not shipped: doctor warns.
    const doc = await doctor(db.url);
    assert.equal(doc.check('migrations').status, 'warn');
    assert.match(doc.check('migrations').detail, /0007_add_device_column/);

    const next = await migrate(db.url, ['create', 'second', '--migrations-dir', dir, '--json']);
    assert.equal(next.json().name, '0008_second');
    const bad = await migrate(db.url, ['create', 'no spaces please', '--migrations-dir', dir]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^tsm: migration name 'no spaces please': use letters, digits/);
    const empty = mkdtempSync(join(tmpdir(), 'tsm-empty-'));
    try {
      const h = await migrate(db.url, ['create', 'first', '--migrations-dir', join(empty, 'mig')]);
      assert.equal(h.code, 0, h.stderr);
      assert.match(h.stdout, /created {2}.*\/mig\/0007_first\.ts\nnote: this folder does not hold tsm's own migrations/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
