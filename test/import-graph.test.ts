/**
 * The doors of the house (docs/architecture.md), checked on what ships: dist/src.
 * - the import graph has no cycle;
 * - the library (dist/src/index.js) reaches neither the CLI (dist/src/cli) nor commander, chalk or
 *   cli-table3, and no module outside dist/src/cli imports the CLI;
 * - importing the library loads none of them and runs nothing: no output, no signal or exit
 *   listeners, exit code untouched, nothing that keeps the process alive;
 * - importing ANY module of dist/src runs nothing (bin/tsm.js is the only module that does).
 * No database needed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const DIST_SRC = fileURLToPath(new URL('../src/', import.meta.url));
const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const CLI_PACKAGES = ['commander', 'chalk', 'cli-table3'];

function jsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...jsFiles(p));
    else if (name.endsWith('.js')) out.push(p);
  }
  return out;
}

interface Edges {
  /** Relative imports, resolved to files. */
  files: { to: string; dynamic: boolean }[];
  /** Package (bare) specifiers: `pg`, `node-pg-migrate/migration`, `node:fs`. */
  packages: { name: string; dynamic: boolean }[];
}

/** Every `import … from`, `export … from`, `import '…'` and `import('…')` with a literal specifier. */
function edgesOf(file: string): Edges {
  // Comments removed first, so an example in a doc comment is not an import.
  const text = readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
  const edges: Edges = { files: [], packages: [] };
  const add = (spec: string, dynamic: boolean): void => {
    if (spec.startsWith('.')) edges.files.push({ to: resolve(dirname(file), spec), dynamic });
    else edges.packages.push({ name: spec, dynamic });
  };
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gm)) add(m[1]!, false);
  for (const m of text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)) add(m[1]!, false);
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) add(m[1]!, true);
  return edges;
}

// Only modules built from a source file that exists: a dist/ left over from an older layout may
// still hold modules whose source is gone (a clean build does not have them).
const files = jsFiles(DIST_SRC).filter((f) => existsSync(join(SRC, relative(DIST_SRC, f).replace(/\.js$/, '.ts'))));
const graph = new Map(files.map((f) => [f, edgesOf(f)]));
const rel = (f: string): string => relative(DIST_SRC, f);
const isCli = (f: string): boolean => rel(f).startsWith('cli/');
const packageName = (spec: string): string => (spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);

/** Everything reachable from `start` (static and dynamic imports, or static ones only). */
function closure(start: string, staticOnly = false): { files: Set<string>; packages: Set<string> } {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const todo = [start];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const e = graph.get(f);
    assert.ok(e, `${rel(f)} is imported but does not exist in dist/src`);
    for (const p of e.packages) if (!staticOnly || !p.dynamic) packages.add(packageName(p.name));
    for (const t of e.files) if (!staticOnly || !t.dynamic) todo.push(t.to);
  }
  return { files: seen, packages };
}

describe('the import graph of dist/src', () => {
  it('was found (the build ran) and every relative import points at a file', () => {
    assert.ok(files.length > 40, `only ${files.length} modules under ${DIST_SRC}: run npm run build`);
    for (const [f, e] of graph) for (const t of e.files) assert.ok(graph.has(t.to), `${rel(f)} imports ${relative(DIST_SRC, t.to)}, which is missing`);
  });

  it('has no cycle (static and dynamic imports)', () => {
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const cycles: string[] = [];
    const visit = (f: string): void => {
      state.set(f, 'open');
      stack.push(f);
      for (const { to } of graph.get(f)?.files ?? []) {
        if (state.get(to) === 'open') cycles.push([...stack.slice(stack.indexOf(to)), to].map(rel).join(' → '));
        else if (!state.has(to)) visit(to);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) if (!state.has(f)) visit(f);
    assert.deepEqual(cycles, []);
  });

  it('the library never reaches the CLI, commander, chalk or cli-table3', () => {
    const lib = closure(join(DIST_SRC, 'index.js'));
    assert.deepEqual([...lib.files].filter(isCli).map(rel), [], 'library modules that are CLI modules');
    assert.deepEqual(CLI_PACKAGES.filter((p) => lib.packages.has(p)), [], 'CLI packages the library can load');
    const outside = [...lib.packages].filter((p) => !p.startsWith('node:')).sort();
    assert.deepEqual(outside, ['node-pg-migrate', 'pg', 'prom-client'], 'the packages the library may load');
  });

  it('before a command runs, the CLI loads commander and the option tables only (tsm --version, --help stay fast)', () => {
    const start = closure(join(DIST_SRC, 'cli', 'main.js'), true);
    assert.deepEqual([...start.packages].filter((p) => !p.startsWith('node:')), ['commander']);
    const ours = [...start.files].map(rel).sort();
    const allowed = (f: string): boolean =>
      /^cli\/commands\/[^/]+\/flags\.js$/.test(f) ||
      ['cli/main.js', 'cli/program.js', 'cli/options.js', 'cli/fleet/flags.js', 'cli/fleet/dispatch.js', 'errors.js', 'store/via.js'].includes(f);
    assert.deepEqual(ours.filter((f) => !allowed(f)), [], 'modules loaded before the command runs');
  });

  it('imports go one way: nothing outside src/cli imports src/cli', () => {
    const wrong: string[] = [];
    for (const [f, e] of graph) {
      if (isCli(f)) continue;
      for (const t of e.files) if (isCli(t.to)) wrong.push(`${rel(f)} → ${rel(t.to)}`);
    }
    assert.deepEqual(wrong, []);
  });
});

// ── what importing does, in a process of its own ─────────────────────────────────────────────

const work = mkdtempSync(join(tmpdir(), 'tsm-import-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Records every module URL the child resolves (module.register hooks, Node ≥ 20.6). */
writeFileSync(
  join(work, 'hooks.mjs'),
  `import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(out, r.url + '\\n');
  return r;
}`,
);
writeFileSync(
  join(work, 'register.mjs'),
  `import { register } from 'node:module';
register(${JSON.stringify(pathToFileURL(join(work, 'hooks.mjs')).href)}, import.meta.url, { data: { out: process.env.TSM_LOADED } });`,
);
/** Imports each module of TSM_MODULES in turn; after each, compares what a module could have started. */
writeFileSync(
  join(work, 'probe.mjs'),
  `import { writeFileSync } from 'node:fs';
const EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'exit', 'beforeExit', 'uncaughtException', 'unhandledRejection', 'warning'];
const snapshot = () => ({
  listeners: Object.fromEntries(EVENTS.map((e) => [e, process.listenerCount(e)])),
  exitCode: process.exitCode ?? null,
  handles: process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length,
});
const before = snapshot();
const results = [];
for (const url of JSON.parse(process.env.TSM_MODULES)) {
  await import(url);
  await new Promise((r) => setImmediate(r));
  results.push({ url, ...snapshot() });
}
writeFileSync(process.env.TSM_RESULT, JSON.stringify({ before, results }));`,
);

interface Snapshot {
  listeners: Record<string, number>;
  exitCode: number | null;
  handles: number;
}
interface ProbeResult {
  before: Snapshot;
  results: (Snapshot & { url: string })[];
}

async function probe(modules: string[], tag: string): Promise<{ result: ProbeResult; loaded: string[]; stdout: string; stderr: string; code: number | null }> {
  const loadedFile = join(work, `${tag}.loaded`);
  const resultFile = join(work, `${tag}.json`);
  writeFileSync(loadedFile, '');
  const child = spawn(process.execPath, ['--import', pathToFileURL(join(work, 'register.mjs')).href, join(work, 'probe.mjs')], {
    env: { ...process.env, TSM_MODULES: JSON.stringify(modules.map((m) => pathToFileURL(m).href)), TSM_LOADED: loadedFile, TSM_RESULT: resultFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  // A module that keeps the event loop alive (a timer, a server) makes the child hang: killed here.
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  clearTimeout(timer);
  const result = JSON.parse(readFileSync(resultFile, 'utf8')) as ProbeResult;
  const loaded = readFileSync(loadedFile, 'utf8').split('\n').filter((l) => l !== '');
  return { result, loaded, stdout, stderr, code };
}

function assertRanNothing(p: Awaited<ReturnType<typeof probe>>): void {
  assert.equal(p.stdout, '', 'no output on stdout');
  assert.equal(p.stderr, '', 'no output on stderr');
  assert.equal(p.code, 0, 'the process ended by itself with exit code 0 (nothing kept it alive, nothing set an exit code)');
  for (const r of p.result.results) {
    const where = r.url.slice(r.url.indexOf('/dist/') + 1);
    assert.deepEqual(r.listeners, p.result.before.listeners, `${where}: no process listeners added`);
    assert.equal(r.exitCode, null, `${where}: exit code untouched`);
    assert.ok(r.handles <= p.result.before.handles, `${where}: no timer, socket or server left running`);
  }
}

describe('importing', () => {
  it('the library entry loads no CLI module and no commander, chalk or cli-table3, and runs nothing', async () => {
    const p = await probe([join(DIST_SRC, 'index.js')], 'library');
    assertRanNothing(p);
    const ours = p.loaded.filter((u) => u.includes('/dist/src/'));
    assert.ok(ours.some((u) => u.endsWith('/dist/src/store/store.js')), 'the recorder saw the library load');
    assert.deepEqual(ours.filter((u) => u.includes('/dist/src/cli/')), [], 'CLI modules loaded');
    const cliPackages = p.loaded.filter((u) => CLI_PACKAGES.some((name) => u.includes(`/node_modules/${name}/`)));
    assert.deepEqual(cliPackages, [], 'CLI packages loaded');
  });

  it('any module of dist/src runs nothing on import (the CLI entry included: bin/tsm.js runs it)', async () => {
    const p = await probe(files, 'all');
    assertRanNothing(p);
    assert.equal(p.result.results.length, files.length, 'every module was imported');
  });
});
