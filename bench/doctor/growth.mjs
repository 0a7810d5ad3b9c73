#!/usr/bin/env node
// bench/doctor/growth.mjs: how `tsm doctor`'s time grows from 1 M to 10 M rows (issue 11).
//
//   npm run build && node bench/doctor/growth.mjs [--runs N] [--quick] [--rebuild] [--drop]
//
// Server: $TSM_BENCH_DATABASE_URL (a superuser URL), else the machine's postgres://postgres@127.0.0.1:5432/postgres.
// It builds once (kept for reruns: about 5 GB and several minutes; --rebuild rebuilds, --drop removes it at
// the end) the database `tsm_bench_doctor_growth` with four telegram_sessions tables of 68-character sessions:
//   fixed_1m, fixed_10m   the fixed schema (primary key, partial unique index on user_id, function)
//   prefix_1m, prefix_10m the pre-fix schema (primary key only: no index on user_id)
// with 0.1 % NULL user_ids, VACUUM ANALYZEd (what autovacuum leaves behind on a settled table).
//
// Then, alternating 1 M and 10 M runs of the same command (so load on a shared machine hits both alike),
// it times the whole CLI (`node bin/tsm.js doctor --json …`: Node start, connect, every check):
//   default mode (the budget: exact below 1,000,000 rows by the planner, estimates above) and
//   --exact --data-timeout 0 (exact counts whatever the size),
// and reports each median and the median of the pairs' ratios 10 M / 1 M.
// Targets: the default mode at 10 M within 1.5× of its time at 1 M, and under 1 s on the fixed schema at 10 M.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { withClient } from '../lib.mjs';

const root = new URL('../..', import.meta.url).pathname;
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const quick = flag('--quick');
const runs = Number(args[args.indexOf('--runs') + 1]) || (quick ? 3 : 7);
const exactRuns = quick ? 1 : 3;
const DB = 'tsm_bench_doctor_growth';
const SESSION_LENGTH = 68;
const SIZES = { '1m': 1_000_000, '10m': 10_000_000 };
const LAYOUT = `v1 sizes=${Object.values(SIZES).join(',')} len=${SESSION_LENGTH} nulls=0.1%`;

const server = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbUrl = (() => {
  const u = new URL(server);
  u.pathname = '/' + DB;
  return u.toString();
})();
const shown = (url) => url.replace(/:\/\/([^:@/]*):[^@]*@/, '://$1:***@');
const log = (m) => process.stderr.write(m + '\n');
const tsm = join(root, 'bin/tsm.js');

if (!existsSync(join(root, 'dist/test/helpers/fixtures.js'))) {
  log('bench/doctor/growth: build first (npm run build)');
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
  const secs = () => `${Math.round((Date.now() - t0) / 1000)} s`;
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${DB}`);
  });
  const { fixedSchema, preFixSchema } = await import(join(root, 'dist/test/helpers/fixtures.js'));
  await withClient(dbUrl, async (c) => {
    await c.query(`SET maintenance_work_mem = '512MB'`);
    for (const [size, rows] of Object.entries(SIZES)) {
      // The rows first, the indexes after (much faster than maintaining them row by row).
      await c.query(preFixSchema(`prefix_${size}`));
      await c.query(`INSERT INTO prefix_${size}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
        SELECT 'tenant-' || (g % 100), CASE WHEN g % 1000 = 0 THEN NULL ELSE (100000000 + g)::text END,
               left(repeat(md5(g::text), 3), ${SESSION_LENGTH}), 'k1', 'authorized'
          FROM generate_series(1, ${rows}) g`);
      log(`  prefix_${size}: ${rows} rows (${secs()})`);
      await c.query(`CREATE SCHEMA fixed_${size}`);
      await c.query(`CREATE TABLE fixed_${size}.telegram_sessions AS TABLE prefix_${size}.telegram_sessions`);
      // fixedSchema() creates the table: take only its ALTER, index and function statements for the copy.
      const fixed = fixedSchema(`fixed_${size}`);
      const rest = fixed.slice(fixed.indexOf('ALTER TABLE'));
      await c.query(`ALTER TABLE fixed_${size}.telegram_sessions ADD PRIMARY KEY (id),
        ALTER COLUMN id SET DEFAULT gen_random_uuid(), ALTER COLUMN tenant_id SET NOT NULL,
        ALTER COLUMN status SET DEFAULT 'pending', ALTER COLUMN status SET NOT NULL,
        ALTER COLUMN created_at SET DEFAULT now(), ALTER COLUMN created_at SET NOT NULL,
        ALTER COLUMN updated_at SET DEFAULT now(), ALTER COLUMN updated_at SET NOT NULL`);
      await c.query(rest);
      log(`  fixed_${size}: copied and indexed (${secs()})`);
      for (const s of [`prefix_${size}`, `fixed_${size}`]) await c.query(`VACUUM ANALYZE ${s}.telegram_sessions`);
      log(`  ${size}: vacuumed and analyzed (${secs()})`);
    }
    await c.query('CREATE TABLE public.bench_layout (layout text)');
    await c.query('INSERT INTO public.bench_layout VALUES ($1)', [LAYOUT]);
  });
  log(`built ${DB} in ${secs()}`);
}

/** One doctor run: wall milliseconds and what it reported. */
function doctorRun(schema, extra) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [tsm, 'doctor', '--json', '-d', dbUrl, '--schema', schema, ...extra], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const ms = performance.now() - t0;
  let report;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    throw new Error(`doctor --schema ${schema} ${extra.join(' ')}: exit ${r.status}, no JSON: ${r.stderr}`);
  }
  return { ms, report };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

if (flag('--rebuild') || !(await built())) {
  log(`building ${DB} on ${shown(server)} (1 M and 10 M rows, twice; several minutes, once)…`);
  await build();
} else {
  log(`reusing ${DB} on ${shown(server)} (${LAYOUT}); --rebuild to rebuild it`);
}

const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
log(`load average before: ${load()} (${runs} runs per mode, ${exactRuns} with --exact; alternating 1 M / 10 M)`);
const modes = [
  { name: 'default', extra: [], n: runs },
  { name: '--exact', extra: ['--exact', '--data-timeout', '0'], n: exactRuns },
];
const rows = [];
for (const kind of ['fixed', 'prefix']) {
  for (const mode of modes) {
    // Warm-up (caches, the first Node start), not counted.
    doctorRun(`${kind}_1m`, mode.extra);
    doctorRun(`${kind}_10m`, mode.extra);
    const small = [];
    const big = [];
    let how;
    for (let i = 0; i < mode.n; i++) {
      const a = doctorRun(`${kind}_1m`, mode.extra);
      const b = doctorRun(`${kind}_10m`, mode.extra);
      small.push(a.ms);
      big.push(b.ms);
      const exactness = (r) => r.report.checks.filter((c) => c.id.startsWith('data.')).map((c) => `${c.id}=${c.exact ? 'exact' : 'estimated'}`).join(' ');
      how = { small: exactness(a), big: exactness(b) };
    }
    const ratios = small.map((s, i) => big[i] / s);
    rows.push({ kind, mode: mode.name, small: median(small), big: median(big), ratio: median(ratios), n: mode.n, how });
    log(`  ${kind} ${mode.name}: 1 M ${median(small).toFixed(0)} ms, 10 M ${median(big).toFixed(0)} ms (${mode.n} pairs)`);
  }
}
log(`load average after: ${load()}`);

console.log(`\nload average ${load()}; medians of ${runs} alternating pairs (default) and ${exactRuns} (--exact)\n`);
console.log('| schema | mode | 1 M rows | 10 M rows | 10 M / 1 M (median of pair ratios) |');
console.log('|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.kind} | ${r.mode} | ${r.small.toFixed(0)} ms | ${r.big.toFixed(0)} ms | ${r.ratio.toFixed(2)}× |`);
}
console.log('\nhow the data checks answered (1 M / 10 M):');
for (const r of rows) console.log(`- ${r.kind} ${r.mode}: ${r.how.small} / ${r.how.big}`);
const fixed10 = rows.find((r) => r.kind === 'fixed' && r.mode === 'default');
const worst = Math.max(...rows.filter((r) => r.mode === 'default').map((r) => r.ratio));
console.log(`\ntargets: default mode 10 M within 1.5× of 1 M: ${worst <= 1.5 ? 'met' : 'NOT met'} (worst ${worst.toFixed(2)}×); ` +
  `fixed schema at 10 M under 1 s: ${fixed10.big < 1000 ? 'met' : 'NOT met'} (${fixed10.big.toFixed(0)} ms)`);

if (flag('--drop')) {
  await withClient(server, (c) => c.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`));
  log(`dropped ${DB}`);
}
