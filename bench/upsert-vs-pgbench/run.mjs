#!/usr/bin/env node
// bench/upsert-vs-pgbench: tsm's upsert path (`tsm bench`: SessionStore over a pg pool, one
// prepared statement per connection) against pgbench -M prepared calling the same function with
// the same number of connections, the same session length and the same spread of user ids.
//
//   npm ci && node bench/upsert-vs-pgbench/run.mjs [--clients 1,4,16] [--duration 10] [--repeat 3]
//                                                  [--users 10000] [--length 800] [--keep]
//                                                  [--quick] [--tsm-bin path/to/bin/tsm.js]
//   --quick: 2 s runs, 7 rounds per client count (about 4 minutes): more, shorter pairs, whose
//   median a busy machine disturbs less; the default is 10 s × 3.
//   --tsm-bin: the tsm to measure (default this checkout's bin/tsm.js); a comma-separated list
//   (e.g. an older build and this one) runs each of them in every round, next to the same pgbench.
//   TSM_BENCH_DATABASE_URL=<superuser URL>   (default postgres://postgres@127.0.0.1:5432/postgres)
//
// It (re)creates the database tsm_bench_upsert, installs the schema with `tsm migrate up`, and for
// each client count runs both tools `--repeat` times, alternating which goes first, with the table
// emptied of bench rows and VACUUM ANALYZEd before every run. Both runs start on an empty set of
// user ids, so both see the same mix of first saves (INSERT) and later saves (UPDATE).
// Reported: median calls/s of each, the ratio tsm / pgbench (target ≥ 0.90: the median of the
// ratios of runs made back to back), latency percentiles (pgbench's from its per-transaction
// log), and each client's own CPU time per call (tsm's from process.cpuUsage, pgbench's from
// /usr/bin/time). The database is dropped at the end
// unless --keep.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const root = new URL('../..', import.meta.url).pathname;
const argv0 = process.argv.slice(2);
const tsmBins = argv0.includes('--tsm-bin') ? argv0[argv0.indexOf('--tsm-bin') + 1].split(',') : [join(root, 'bin/tsm.js')];
const tsm = tsmBins[tsmBins.length - 1];
if (!existsSync(join(root, 'dist/src/cli/main.js'))) {
  process.stderr.write('bench/upsert-vs-pgbench: build first (npm ci, or npx tsc -p tsconfig.json)\n');
  process.exit(2);
}
const pg = (await import(join(root, 'node_modules/pg/lib/index.js'))).default;

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const clientsList = opt('clients', '1,4,16').split(',').map(Number);
const duration = Number(opt('duration', quick ? '2' : '10'));
const repeat = Number(opt('repeat', quick ? '7' : '3'));
const users = Number(opt('users', '10000'));
const length = Number(opt('length', '800'));
const keep = args.includes('--keep');

const serverUrl = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = 'tsm_bench_upsert';
const dbUrl = (() => {
  const u = new URL(serverUrl);
  u.pathname = '/' + DB;
  return u.toString();
})();
const log = (line) => process.stderr.write(`upsert-vs-pgbench: ${line}\n`);

async function sql(url, text) {
  const c = new pg.Client({ connectionString: url, application_name: 'tsm-bench' });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

function run(cmd, argv, what) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    process.stderr.write(`${what} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}\n`);
    process.exit(1);
  }
  return r.stdout;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const haveTime = existsSync('/usr/bin/time');
const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];

// ── setup ──────────────────────────────────────────────────────────────────────────────────────
const pgbenchVersion = spawnSync('pgbench', ['--version'], { encoding: 'utf8' });
if (pgbenchVersion.status !== 0) {
  process.stderr.write('bench/upsert-vs-pgbench: pgbench not found (apt-get install postgresql-client)\n');
  process.exit(2);
}
log(`creating database ${DB}`);
await sql(serverUrl, `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
await sql(serverUrl, `CREATE DATABASE ${DB}`);
run(process.execPath, [tsm, 'migrate', 'up', '-d', dbUrl], 'tsm migrate up');
const serverVersion = (await sql(dbUrl, 'SHOW server_version')).rows[0].server_version;

const work = mkdtempSync(join(tmpdir(), 'tsm-upsert-bench-'));
const script = join(work, 'upsert.sql');
// Variables become parameters of the prepared statement (-M prepared), as in tsm: tenant, user id,
// session string and key travel with every call; status, auth_error and error_details are constants.
writeFileSync(
  script,
  `\\set uid random(1, :users)
SELECT public.upsert_telegram_session(:tenant::varchar, (:prefix::text || :uid)::varchar, :sess::text, :key::varchar, 'authorized'::varchar, NULL::text, NULL::text);
`,
);
const session = randomBytes(Math.ceil((length * 3) / 4) + 3)
  .toString('base64')
  .slice(0, length);

async function reset() {
  await sql(dbUrl, `DELETE FROM telegram_sessions WHERE tenant_id = 'tsm-bench'`);
  await sql(dbUrl, 'VACUUM ANALYZE telegram_sessions');
  await sql(dbUrl, 'CHECKPOINT');
}

async function runTsm(clients, bin = tsm) {
  await reset();
  const out = run(
    process.execPath,
    [bin, 'bench', '--json', '-d', dbUrl, '--clients', String(clients), '--duration', String(duration), '--users', String(users), '--length', String(length)],
    'tsm bench',
  );
  const j = JSON.parse(out);
  if (Object.keys(j.errors).length > 0) throw new Error(`tsm bench errors: ${JSON.stringify(j.errors)}`);
  return { tps: j.calls_per_second, p50: j.latency_ms.p50, p95: j.latency_ms.p95, p99: j.latency_ms.p99, cpu: j.client_cpu_us_per_call };
}

async function runPgbench(clients) {
  await reset();
  const logDir = mkdtempSync(join(work, 'log-'));
  const cpuFile = join(logDir, 'cpu');
  // /usr/bin/time gives pgbench's own CPU time (user + system), to compare with tsm's per call.
  const out = run(
    haveTime ? '/usr/bin/time' : 'pgbench',
    [
      ...(haveTime ? ['-f', '%U %S', '-o', cpuFile, 'pgbench'] : []),
      '-n', '-M', 'prepared', '-c', String(clients), '-j', '1', '-T', String(duration),
      '-D', 'tenant=tsm-bench', '-D', 'prefix=tsm-bench:pgbench:', '-D', `users=${users}`, '-D', 'key=tsm-bench-key', '-D', `sess=${session}`,
      '-l', '--log-prefix', join(logDir, 'tx'), '-f', script, dbUrl,
    ],
    'pgbench',
  );
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
  if (!m) throw new Error(`no tps in pgbench output:\n${out}`);
  if (!/number of failed transactions: 0 /.test(out)) throw new Error(`pgbench had failures:\n${out}`);
  const lat = [];
  for (const f of readdirSync(logDir)) {
    if (f === 'cpu') continue;
    for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
      const fields = line.split(' ');
      if (fields.length >= 3) lat.push(Number(fields[2]) / 1000);
    }
  }
  lat.sort((a, b) => a - b);
  let cpu = NaN;
  if (haveTime) {
    const [u, sy] = readFileSync(cpuFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
    cpu = ((u + sy) * 1e6) / lat.length;
  }
  rmSync(logDir, { recursive: true, force: true });
  return { tps: Number(m[1]), p50: pct(lat, 0.5), p95: pct(lat, 0.95), p99: pct(lat, 0.99), cpu };
}

// ── measure ────────────────────────────────────────────────────────────────────────────────────
// Every round runs each tsm build and pgbench once, in an order that alternates between rounds;
// each tsm run is paired with that round's pgbench run. On a shared machine the median of those
// paired ratios is steadier than the ratio of the two medians.
const rows = [];
const sides = [...tsmBins.map((bin) => ({ who: 'tsm', bin })), { who: 'pgbench' }];
try {
  for (const clients of clientsList) {
    const t = tsmBins.map(() => []);
    const p = [];
    for (let rep = 0; rep < repeat; rep++) {
      const order = rep % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        const r = side.who === 'tsm' ? await runTsm(clients, side.bin) : await runPgbench(clients);
        r.load = loadavg()[0];
        if (side.who === 'tsm') t[tsmBins.indexOf(side.bin)].push(r);
        else p.push(r);
        const name = side.who === 'tsm' && tsmBins.length > 1 ? `tsm ${side.bin}` : side.who;
        log(`${clients} client(s), run ${rep + 1}/${repeat}, ${name}: ${r.tps.toFixed(0)} calls/s, p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms, client CPU ${r.cpu.toFixed(0)} µs/call, load ${r.load.toFixed(1)}`);
      }
    }
    const med = (xs, k) => median(xs.map((x) => x[k]));
    tsmBins.forEach((bin, b) => {
      const ratios = t[b].map((x, i) => x.tps / p[i].tps);
      rows.push({ clients, bin, tsm: med(t[b], 'tps'), pgbench: med(p, 'tps'), ratio: median(ratios), ratios, t: t[b], p, med });
    });
  }
} finally {
  await sql(dbUrl, `DELETE FROM telegram_sessions WHERE tenant_id = 'tsm-bench'`).catch(() => {});
  if (!keep) await sql(serverUrl, `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => {});
  rmSync(work, { recursive: true, force: true });
}

const f1 = (x) => x.toFixed(0);
const f3 = (x) => x.toFixed(2);
console.log(`\nPostgreSQL ${serverVersion}, Node ${process.version}, ${duration} s per run, ${repeat} rounds, ${users} user ids, ${length}-character sessions\n`);
console.log(`| ${tsmBins.length > 1 ? 'tsm | ' : ''}clients | tsm bench calls/s | pgbench tps | tsm / pgbench (median of pairs) | each pair | tsm p50 / p95 / p99 ms | pgbench p50 / p95 / p99 ms | client CPU µs/call tsm / pgbench | load average (1 min) after each run |`);
console.log(`|${tsmBins.length > 1 ? '---|' : ''}---|---|---|---|---|---|---|---|---|`);
for (const r of rows) {
  console.log(
    `| ${tsmBins.length > 1 ? `${r.bin} | ` : ''}${r.clients} | ${f1(r.tsm)} | ${f1(r.pgbench)} | **${(r.ratio * 100).toFixed(0)}%** | ${r.ratios.map((x) => (x * 100).toFixed(0) + '%').join(', ')} | ` +
      `${f3(r.med(r.t, 'p50'))} / ${f3(r.med(r.t, 'p95'))} / ${f3(r.med(r.t, 'p99'))} | ${f3(r.med(r.p, 'p50'))} / ${f3(r.med(r.p, 'p95'))} / ${f3(r.med(r.p, 'p99'))} | ${f1(r.med(r.t, 'cpu'))} / ${f1(r.med(r.p, 'cpu'))} | ${[...r.t, ...r.p].map((x) => x.load.toFixed(1)).join(', ')} |`,
  );
}
const mine = rows.filter((r) => r.bin === tsm);
const worst = Math.min(...mine.map((r) => r.ratio));
console.log(`\ntarget tsm ≥ 95% of pgbench at every client count: ${worst >= 0.95 ? 'met' : `not met (lowest ${(worst * 100).toFixed(0)}%)`}`);
