#!/usr/bin/env node
// bench/doctor: `tsm doctor` against a database with 10,000 unrelated tables and 1,000,000 session rows.
//
//   npm ci && node bench/doctor/run.mjs [--runs N] [--rebuild] [--drop]
//
// Server: $TSM_BENCH_DATABASE_URL (a superuser URL), else the machine's postgres://postgres@127.0.0.1:5432/postgres.
// It builds (once; kept for reruns, `--drop` removes it at the end) the database `tsm_bench_doctor`:
//   - schema noise: 10,000 unrelated tables (each with a primary key index and a TOAST table);
//   - schema fixed: the fixed telegram_sessions with 1,000,000 rows (800-character sessions);
//   - schema prefix: the pre-fix telegram_sessions (no unique index) with the same 1,000,000 rows.
// Then it times, with hyperfine when installed (else a loop of N spawns):
//   - `tsm doctor --json --schema fixed` and `--schema prefix` (the whole CLI: node start, connect, checks);
//   - the baseline: psql running the incident write-up's two manual diagnostic queries;
// and counts doctor's round trips in-process (client.query calls, by phase).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withClient } from '../lib.mjs';

const root = new URL('../..', import.meta.url).pathname;
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const runs = Number(args[args.indexOf('--runs') + 1]) || 10;
const TABLES = 10_000;
const ROWS = 1_000_000;
const SESSION_LENGTH = 800;
const DB = 'tsm_bench_doctor';
const LAYOUT = `v1 tables=${TABLES} rows=${ROWS} len=${SESSION_LENGTH}`;

const server = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbUrl = (() => {
  const u = new URL(server);
  u.pathname = '/' + DB;
  return u.toString();
})();
const shown = (url) => url.replace(/:\/\/([^:@/]*):[^@]*@/, '://$1:***@');
const log = (m) => process.stderr.write(m + '\n');

if (!existsSync(join(root, 'dist/src/doctor/runner.js'))) {
  log('bench/doctor: build first (npm ci, or npx tsc -p tsconfig.json)');
  process.exit(2);
}

async function built() {
  const exists = await withClient(server, async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB])).rowCount === 1);
  if (!exists) return false;
  return withClient(dbUrl, async (c) => {
    const r = await c.query(`SELECT to_regclass('public.bench_layout') IS NOT NULL AS ok`);
    if (!r.rows[0].ok) return false;
    return (await c.query('SELECT layout FROM public.bench_layout')).rows[0]?.layout === LAYOUT;
  });
}

async function build() {
  const t0 = Date.now();
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${DB}`);
  });
  const { fixedSchema, preFixSchema } = await import(join(root, 'dist/test/helpers/fixtures.js'));
  await withClient(dbUrl, async (c) => {
    await c.query('CREATE SCHEMA noise');
    // Batches: one transaction holding 10,000 new relations would exhaust the lock table.
    for (let from = 1; from <= TABLES; from += 500) {
      await c.query(`DO $$ BEGIN FOR i IN ${from}..${Math.min(from + 499, TABLES)} LOOP
        EXECUTE format('CREATE TABLE noise.t_%s (id bigint PRIMARY KEY, name text, created_at timestamptz DEFAULT now())', i);
      END LOOP; END $$`);
      if (from % 2500 === 1) log(`  ${from - 1} / ${TABLES} noise tables`);
    }
    log(`  ${TABLES} noise tables (${Math.round((Date.now() - t0) / 1000)}s)`);
    await c.query(fixedSchema('fixed'));
    await c.query(`INSERT INTO fixed.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
      SELECT 'tenant-' || (g % 100), (100000000 + g)::text, left(repeat(md5(g::text), 26), ${SESSION_LENGTH}), 'k1', 'authorized'
        FROM generate_series(1, ${ROWS}) g`);
    log(`  fixed: ${ROWS} rows (${Math.round((Date.now() - t0) / 1000)}s)`);
    await c.query(preFixSchema('prefix'));
    await c.query(`INSERT INTO prefix.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
      SELECT tenant_id, user_id, session_string_enc, key_id, status FROM fixed.telegram_sessions`);
    log(`  prefix: ${ROWS} rows (${Math.round((Date.now() - t0) / 1000)}s)`);
    await c.query('VACUUM ANALYZE fixed.telegram_sessions');
    await c.query('VACUUM ANALYZE prefix.telegram_sessions');
    await c.query('CREATE TABLE public.bench_layout (layout text)');
    await c.query('INSERT INTO public.bench_layout VALUES ($1)', [LAYOUT]);
  });
  log(`built ${DB} in ${Math.round((Date.now() - t0) / 1000)}s`);
}

/** Round trips (client.query calls) and in-process time of one doctor run, by phase. */
async function roundTrips(schema) {
  const { runDoctor } = await import(join(root, 'dist/src/doctor/index.js'));
  return withClient(dbUrl, async (c) => {
    const calls = [];
    const query = c.query.bind(c);
    c.query = (...a) => {
      const text = typeof a[0] === 'string' ? a[0] : a[0].text;
      calls.push(text.trimStart().slice(0, 40).replace(/\s+/g, ' '));
      return query(...a);
    };
    const t0 = performance.now();
    const report = await runDoctor(c, { schema, minSessionLength: 4096 }, shown(dbUrl));
    const ms = performance.now() - t0;
    return { calls, ms, summary: report.summary, statuses: report.checks.map((x) => `${x.id}=${x.status}`).join(' ') };
  });
}

function hyperfine(commands) {
  const dir = mkdtempSync(join(tmpdir(), 'tsm-bench-'));
  const out = join(dir, 'h.json');
  const r = spawnSync(
    'hyperfine',
    ['--warmup', '2', '--runs', String(runs), '-N', '--ignore-failure', '--export-json', out, ...commands.map((c) => c.cmd)],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0) throw new Error('hyperfine failed');
  return JSON.parse(readFileSync(out, 'utf8')).results.map((x, i) => ({ name: commands[i].name, median: x.median * 1000 }));
}

function loop(commands) {
  return commands.map(({ name, argv }) => {
    const times = [];
    for (let i = 0; i < runs + 2; i++) {
      const t0 = performance.now();
      spawnSync(argv[0], argv.slice(1), { stdio: 'ignore' });
      if (i >= 2) times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { name, median: times[Math.floor(times.length / 2)] };
  });
}

if (flag('--rebuild') || !(await built())) {
  log(`building ${DB} on ${shown(server)} (${TABLES} tables, ${ROWS} rows per schema; takes a while, once)…`);
  await build();
} else {
  log(`reusing ${DB} on ${shown(server)} (${LAYOUT}); --rebuild to rebuild it`);
}

const tsm = join(root, 'bin/tsm.js');
const manual =
  `SELECT table_name, column_name, data_type, character_maximum_length FROM information_schema.columns ` +
  `WHERE (column_name ILIKE '%session%' OR column_name ILIKE '%telethon%') AND table_schema = 'prefix' ORDER BY 1, 2; ` +
  `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'telegram_sessions'`;
const commands = [
  { name: 'psql: the incident\'s 2 manual queries', argv: ['psql', '-X', '-q', '-d', dbUrl, '-c', manual] },
  { name: 'tsm doctor --schema fixed', argv: [process.execPath, tsm, 'doctor', '--json', '-d', dbUrl, '--schema', 'fixed'] },
  { name: 'tsm doctor --schema prefix', argv: [process.execPath, tsm, 'doctor', '--json', '-d', dbUrl, '--schema', 'prefix'] },
].map((c) => ({ ...c, cmd: c.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ') }));

const haveHyperfine = spawnSync('hyperfine', ['--version']).status === 0;
log(haveHyperfine ? `hyperfine, ${runs} runs after 2 warmups` : `hyperfine not installed: ${runs} spawns after 2 warmups`);
const results = haveHyperfine ? hyperfine(commands) : loop(commands);

const base = results[0].median;
console.log(`\n| command | median | vs psql baseline |`);
console.log(`|---|---|---|`);
for (const r of results) {
  const delta = r.median - base;
  console.log(`| ${r.name} | ${r.median.toFixed(0)} ms | ${(r.median / base).toFixed(2)}× (${delta >= 0 ? '+' : ''}${delta.toFixed(0)} ms) |`);
}
for (const schema of ['fixed', 'prefix']) {
  const rt = await roundTrips(schema);
  console.log(`\n${schema}: ${rt.calls.length} round trips, ${rt.ms.toFixed(0)} ms in-process; ${JSON.stringify(rt.summary)}`);
  for (const c of rt.calls) console.log(`  - ${c}…`);
}

if (flag('--drop')) {
  await withClient(server, (c) => c.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`));
  log(`dropped ${DB}`);
}
