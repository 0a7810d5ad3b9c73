/**
 * Least-privilege roles: the GRANT blocks of docs/production.md ("<!-- grants:NAME -->" followed by
 * a ```sql block) are run as they are written (role names made unique, the database renamed), every
 * command then runs as its role through the real CLI, and again with one privilege missing, where
 * it must fail with one clear line. The docs and this test can therefore not disagree.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { runTsm, type RunResult } from './helpers/cli.js';
import { asAdmin, createTestDatabase, urlFor } from './helpers/db.js';
import { preFixSchema } from './helpers/fixtures.js';

const DOC = new URL('../../docs/production.md', import.meta.url);
type Role = 'tsm_owner' | 'tsm_app' | 'tsm_tester' | 'tsm_doctor' | 'tsm_dedupe';

/** The SQL block after each `<!-- grants:NAME -->` marker. */
function grantBlocks(): Map<string, string> {
  const text = readFileSync(DOC, 'utf8');
  const blocks = new Map<string, string>();
  for (const m of text.matchAll(/<!-- grants:([a-z-]+) -->\s*```sql\n([\s\S]*?)```/g)) blocks.set(m[1], m[2]);
  return blocks;
}

const suffix = Math.random().toString(36).slice(2, 8);
const created = new Set<string>();
const passwords = new Map<string, string>();

/** Roles of this run: `tsm_app` → `tsm_app_<suffix>` (and `_less` variants), each with its own password. */
const roleName = (role: Role, variant = ''): string => `${role}${variant}_${suffix}`;

function adapt(sql: string, database: string, variant = ''): string {
  return sql
    .replace(/\b(tsm_owner|tsm_app|tsm_tester|tsm_doctor|tsm_dedupe)\b/g, (r) => roleName(r as Role, variant))
    .replace(/ON DATABASE app\b/g, `ON DATABASE "${database}"`)
    .replace(/CREATE ROLE (\w+) LOGIN PASSWORD 'change-me'/g, (_m, name: string) => {
      const pw = 'pw-' + Math.random().toString(36).slice(2, 12);
      passwords.set(name, pw);
      created.add(name);
      return `CREATE ROLE ${name} LOGIN PASSWORD '${pw}'`;
    });
}

/** The block with one privilege taken out of its GRANT lists (e.g. DELETE), for the negative runs. */
function without(sql: string, privilege: string): string {
  const out = sql
    .split('\n')
    .map((line) => {
      const m = /^GRANT ([A-Z, ]+) ON (.*)$/.exec(line);
      if (!m) return line;
      const privs = m[1].split(',').map((p) => p.trim()).filter((p) => p !== privilege);
      return privs.length ? `GRANT ${privs.join(', ')} ON ${m[2]}` : '';
    })
    .join('\n');
  assert.notEqual(out, sql, `the block grants ${privilege}`);
  return out;
}

function url(database: string, role: Role, variant = ''): string {
  const name = roleName(role, variant);
  return urlFor(database, { user: name, password: passwords.get(name)! });
}

const blocks = grantBlocks();
const block = (name: string): string => {
  const b = blocks.get(name);
  assert.ok(b, `docs/production.md has a grants:${name} block`);
  return b;
};

const db = await createTestDatabase(import.meta.url);
const scratch = await createTestDatabase(import.meta.url);
after(async () => {
  // The databases go first (their own after hooks), then the roles.
  await scratch.drop();
  await db.drop();
  await asAdmin(async (c) => {
    for (const r of created) {
      await c.query(`DROP OWNED BY "${r}" CASCADE`).catch(() => {});
      await c.query(`DROP ROLE IF EXISTS "${r}"`).catch(() => {});
    }
  });
});

const tsm = (args: string[]): Promise<RunResult> => runTsm(args, { timeoutMs: 120_000 });

function succeeded(r: RunResult, what: string): void {
  assert.equal(r.code, 0, `${what}: expected exit 0, got ${r.code}\n${r.stdout}\n${r.stderr}`);
}

function failedClearly(r: RunResult, pattern: RegExp, what: string): void {
  assert.notEqual(r.code, 0, `${what}: expected a failure\n${r.stdout}`);
  assert.ok(r.code === 1, `${what}: expected exit 1, got ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n').filter((l) => !/^tsm (migrate|dedupe):/.test(l));
  assert.equal(lines.length, 1, `${what}: one line on stderr:\n${r.stderr}`);
  assert.match(lines[0], pattern, what);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

describe('least-privilege roles from docs/production.md', () => {
  it('the docs have a block for each role', () => {
    for (const name of ['owner', 'owner-existing', 'app', 'harden', 'tester', 'doctor', 'doctor-as-app', 'dedupe']) block(name);
  });

  it('dedupe with its grants archives the duplicates (and without DELETE stops with one line)', async () => {
    // The existing production table, with duplicates, made by someone else; then the owner block.
    await db.sql(preFixSchema('public'));
    await db.sql(`INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc) VALUES ('t','u1','a'), ('t','u1','b'), ('t','u2','c')`);
    await db.sql(adapt(block('owner') + block('owner-existing'), db.name));

    // The refused run goes to the scratch database: it would create the archive here, as its own.
    await scratch.sql(preFixSchema('public'));
    await scratch.sql(`INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc) VALUES ('t','u1','a'), ('t','u1','b')`);
    await scratch.sql(adapt(without(block('dedupe'), 'DELETE'), scratch.name, '_less'));
    failedClearly(await tsm(['dedupe', '-d', url(scratch.name, 'tsm_dedupe', '_less')]), /permission denied for table telegram_sessions\b/, 'dedupe without DELETE');

    await db.sql(adapt(block('dedupe'), db.name));
    succeeded(await tsm(['dedupe', '-d', url(db.name, 'tsm_dedupe')]), 'dedupe');
    const { rows } = await db.sql(`SELECT (SELECT count(*)::int FROM telegram_sessions) AS kept, (SELECT count(*)::int FROM telegram_sessions_duplicates_archive) AS archived`);
    assert.deepEqual(rows[0], { kept: 2, archived: 1 });
  });

  it('migrate as the table owner applies everything; a role that only has CREATE on the schema is refused', async () => {
    // In the scratch database: the refused run must not leave its own tsm_migrations behind here.
    await scratch.sql(adapt(block('owner'), scratch.name, '_less'));
    failedClearly(await tsm(['migrate', 'up', '-d', url(scratch.name, 'tsm_owner', '_less')]), /does not own public\.telegram_sessions \(its owner is \w+\): migrations alter the table.*; nothing was changed$|must be owner of table telegram_sessions/, 'migrate as a non-owner');

    succeeded(await tsm(['migrate', 'up', '-d', url(db.name, 'tsm_owner')]), 'migrate up as the owner');
    // Every overload (0006 adds one for bigint user ids) belongs to the owner.
    const { rows } = await db.sql(`SELECT DISTINCT pg_get_userbyid(p.proowner) AS owner FROM pg_proc p WHERE p.proname = 'upsert_telegram_session'`);
    assert.deepEqual(rows, [{ owner: roleName('tsm_owner') }]);
    succeeded(await tsm(['migrate', 'status', '-d', url(db.name, 'tsm_owner')]), 'migrate status as the owner');
  });

  it('the application role saves sessions (test-write --keep, function and statement); without EXECUTE it cannot', async () => {
    await db.sql(adapt(block('app') + block('harden'), db.name));
    for (const via of ['function', 'statement']) {
      succeeded(await tsm(['test-write', '--keep', '--via', via, '--lengths', '68,800', '--concurrency', '2', '--rounds', '2', '-d', url(db.name, 'tsm_app')]), `test-write --keep --via ${via} as the application`);
    }
    // PUBLIC's EXECUTE is revoked (harden): a role without the explicit grant cannot call the function.
    await db.sql(adapt(without(block('app'), 'EXECUTE'), db.name, '_less'));
    const r = await tsm(['test-write', '--keep', '--lengths', '68', '--concurrency', '2', '--rounds', '1', '--json', '-d', url(db.name, 'tsm_app', '_less')]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(JSON.stringify(r.json()), /permission_denied/);
  });

  it('test-write and bench as the tester clean up after themselves; without DELETE the cleanup fails clearly', async () => {
    await db.sql(adapt(block('tester'), db.name));
    const before = (await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions`)).rows[0].n;
    succeeded(await tsm(['test-write', '--lengths', '68,268,800', '--concurrency', '2', '--rounds', '2', '-d', url(db.name, 'tsm_tester')]), 'test-write as the tester');
    succeeded(await tsm(['bench', '--duration', '1', '--clients', '2', '--users', '50', '-d', url(db.name, 'tsm_tester')]), 'bench as the tester');
    assert.equal((await db.sql(`SELECT count(*)::int AS n FROM telegram_sessions`)).rows[0].n, before, 'no test rows left behind');

    await db.sql(adapt(without(block('tester'), 'DELETE'), db.name, '_less'));
    const r = await tsm(['test-write', '--lengths', '68', '--concurrency', '2', '--rounds', '1', '-d', url(db.name, 'tsm_tester', '_less')]);
    assert.equal(r.code, 1, 'the cleanup cannot delete: not a success');
    assert.match(r.stdout + r.stderr, /permission denied|permission_denied/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it('doctor read-only: every check answers except the two that need write privileges; as the application: all ok', async () => {
    await db.sql(adapt(block('doctor') + block('doctor-as-app'), db.name));
    const ro = await tsm(['doctor', '--json', '-d', url(db.name, 'tsm_doctor')]);
    assert.equal(ro.code, 1, ro.stderr);
    const checks = ro.json<{ checks: { id: string; status: string; detail: string }[] }>().checks;
    const notOk = Object.fromEntries(checks.filter((c) => c.status !== 'ok').map((c) => [c.id, c.status]));
    assert.deepEqual(notOk, { 'index.on-conflict': 'skipped', privileges: 'fail' }, JSON.stringify(checks, null, 1));
    assert.match(checks.find((c) => c.id === 'privileges')!.detail, /lacks INSERT, UPDATE/);

    const asApp = await tsm(['doctor', '--json', '-d', url(db.name, 'tsm_app')]);
    assert.equal(asApp.code, 0, asApp.stdout);
    assert.ok(asApp.json<{ checks: { status: string }[] }>().checks.every((c) => c.status === 'ok'), asApp.stdout);

    // Without SELECT on the table the data checks cannot run: doctor says so and fails.
    await db.sql(adapt(without(block('doctor'), 'SELECT'), db.name, '_less'));
    const blind = await tsm(['doctor', '--json', '-d', url(db.name, 'tsm_doctor', '_less')]);
    assert.equal(blind.code, 1, blind.stderr);
    assert.match(blind.stdout, /permission denied|lacks SELECT/);
  });
});
