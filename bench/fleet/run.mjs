#!/usr/bin/env node
// bench/fleet: `tsm migrate up` over 50 pre-fix databases (10,000 rows each), three ways:
//   fleet-8  one process: tsm migrate up --targets FILE --parallel 8
//   loop     the loop a user would write instead, one tsm process per database, one after the other:
//              while read -r url; do node bin/tsm.js migrate up -d "$url" >/dev/null; done < urls.txt
//   fleet-1  one process: tsm migrate up --targets FILE --parallel 1
// Each round recreates the 50 databases from a template (CREATE DATABASE … TEMPLATE: every variant
// starts from the same pre-fix state), then times the three variants in a rotating order; the
// result is the median over the rounds of each round's ratio loop / fleet-8 and fleet-1 / fleet-8
// (ratios, not absolute times: this machine is shared). Also the peak RSS of the tsm process
// (VmHWM) and the peak number of tsm's connections on the server (pg_stat_activity, sampled).
//
//   npm ci && node bench/fleet/run.mjs [--quick] [--dbs N] [--rows N] [--rounds N] [--keep] [--drop] [--rebuild]
//
// --quick: 10 databases of 1,000 rows, 1 round (a smoke run). --keep leaves the last round's
// databases (tsm_bench_fleet_NN); --drop removes them and the template at the end; --rebuild
// rebuilds the template. Server: $TSM_BENCH_DATABASE_URL (a superuser URL), else the machine's
// postgres://postgres@127.0.0.1:5432/postgres.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { databaseUrl, templateReady, withClient } from '../lib.mjs';

const root = new URL('../..', import.meta.url).pathname;
const args = process.argv.slice(2);
const has = (name) => args.includes(name);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const QUICK = has('--quick');
const DBS = opt('--dbs', QUICK ? 10 : 50);
const ROWS = opt('--rows', QUICK ? 1_000 : 10_000);
const ROUNDS = opt('--rounds', QUICK ? 1 : 3);
const PARALLEL = 8;
const SESSION_LENGTH = 268;
const TPL = 'tsm_bench_fleet_tpl';
const LAYOUT = `v1 rows=${ROWS} len=${SESSION_LENGTH}`;
const dbName = (i) => `tsm_bench_fleet_${String(i).padStart(3, '0')}`;

const server = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const urlOf = (db) => databaseUrl(server, db);
const log = (m) => process.stderr.write(m + '\n');
const BIN = join(root, 'bin/tsm.js');

if (!existsSync(join(root, 'dist/src/cli/main.js')) || !existsSync(join(root, 'dist/test/helpers/fixtures.js'))) {
  log('bench/fleet: build first (npm ci, or npx tsc -p tsconfig.json)');
  process.exit(2);
}

async function buildTemplate() {
  log(`building ${TPL}: the pre-fix table with ${ROWS.toLocaleString('en')} rows of ${SESSION_LENGTH}-character sessions …`);
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${TPL} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${TPL}`);
  });
  const { preFixSchema } = await import(join(root, 'dist/test/helpers/fixtures.js'));
  await withClient(urlOf(TPL), async (c) => {
    await c.query(preFixSchema('public'));
    await c.query(
      `INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
       SELECT 't-' || (g % 10), 'u-' || g, substr(repeat(md5(g::text), 9), 1, $2), 'k1', 'active' FROM generate_series(1, $1::int) g`,
      [ROWS, SESSION_LENGTH],
    );
    await c.query('VACUUM ANALYZE public.telegram_sessions');
    await c.query(`COMMENT ON TABLE public.telegram_sessions IS '${LAYOUT}'`);
  });
}

/** The fleet's databases, fresh copies of the template. */
async function resetFleet() {
  await withClient(server, async (c) => {
    for (let i = 1; i <= DBS; i++) {
      await c.query(`DROP DATABASE IF EXISTS ${dbName(i)} WITH (FORCE)`);
      await c.query(`CREATE DATABASE ${dbName(i)} TEMPLATE ${TPL}`);
    }
  });
}

async function dropFleet(alsoTemplate) {
  await withClient(server, async (c) => {
    for (let i = 1; i <= DBS; i++) await c.query(`DROP DATABASE IF EXISTS ${dbName(i)} WITH (FORCE)`);
    if (alsoTemplate) await c.query(`DROP DATABASE IF EXISTS ${TPL} WITH (FORCE)`);
  });
}

/** Every fleet database migrated (the check that each variant did the work). */
async function verifyMigrated() {
  for (let i = 1; i <= DBS; i++) {
    const ok = await withClient(urlOf(dbName(i)), async (c) => {
      const r = await c.query(
        `SELECT (SELECT count(*) FROM public.tsm_migrations) AS applied,
                (SELECT count(*) FROM pg_indexes WHERE tablename = 'telegram_sessions' AND indexdef LIKE 'CREATE UNIQUE INDEX%(user_id)%') AS idx`,
      );
      return Number(r.rows[0].applied) >= 6 && Number(r.rows[0].idx) === 1;
    });
    if (!ok) throw new Error(`${dbName(i)} was not migrated`);
  }
}

/** Samples tsm's connections to the fleet's databases, and the peak RSS (VmHWM) of the pid given. */
function sampler() {
  let stop = false;
  const peak = { connections: 0, rssKb: 0 };
  let pids = [];
  const done = (async () => {
    const c = new pg.Client({ connectionString: server, application_name: 'tsm-bench-sampler' });
    await c.connect();
    try {
      while (!stop) {
        const r = await c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tsm' AND datname LIKE 'tsm\\_bench\\_fleet\\_%' AND datname <> $1`, [TPL]);
        peak.connections = Math.max(peak.connections, r.rows[0].n);
        for (const pid of pids) {
          try {
            const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
            if (m) peak.rssKb = Math.max(peak.rssKb, Number(m[1]));
          } catch {
            // gone
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await c.end();
    }
  })();
  return {
    watch(pid) {
      pids = [pid];
    },
    async end() {
      stop = true;
      await done;
      return peak;
    },
  };
}

function run(cmd, argv, watch) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, argv, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    watch?.(child.pid);
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}: ${err.split('\n').slice(-3).join(' | ')}`));
      else resolve(ms);
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'tsm-bench-fleet-'));
const urls = Array.from({ length: DBS }, (_, i) => urlOf(dbName(i + 1)));
const targets = join(dir, 'targets.txt');
writeFileSync(targets, urls.join('\n') + '\n');
writeFileSync(join(dir, 'urls.txt'), urls.join('\n') + '\n');

const VARIANTS = {
  'fleet-8': (s) => run(process.execPath, [BIN, 'migrate', 'up', '--targets', targets, '--parallel', String(PARALLEL), '--json'], s.watch),
  loop: () => run('bash', ['-c', `while read -r url; do node ${JSON.stringify(BIN)} migrate up -d "$url" >/dev/null || exit 1; done < ${JSON.stringify(join(dir, 'urls.txt'))}`]),
  'fleet-1': (s) => run(process.execPath, [BIN, 'migrate', 'up', '--targets', targets, '--parallel', '1', '--json'], s.watch),
};
const ORDERS = [
  ['fleet-8', 'loop', 'fleet-1'],
  ['loop', 'fleet-1', 'fleet-8'],
  ['fleet-1', 'fleet-8', 'loop'],
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;

try {
  const load0 = loadavg();
  if (has('--rebuild') || !(await templateReady(server, TPL, LAYOUT))) await buildTemplate();
  const results = []; // per round: { variant: { ms, peak } }
  for (let round = 0; round < ROUNDS; round++) {
    const r = {};
    for (const v of ORDERS[round % ORDERS.length]) {
      await resetFleet();
      const s = sampler();
      const ms = await VARIANTS[v](s);
      const peak = await s.end();
      await verifyMigrated();
      r[v] = { ms, peak };
      log(`round ${round + 1}/${ROUNDS}: ${v.padEnd(8)} ${fmt(ms)}  peak tsm connections ${peak.connections}${peak.rssKb ? `, peak RSS ${(peak.rssKb / 1024).toFixed(0)} MB` : ''}`);
    }
    results.push(r);
  }
  // The resume: the same fleet run again once everything is up to date (the last variant left it migrated).
  const rerun = await VARIANTS['fleet-8']({ watch: () => {} });
  log(`rerun over ${DBS} up-to-date databases (fleet-8): ${fmt(rerun)}`);
  const load1 = loadavg();
  const ratios = (a, b) => results.map((r) => r[a].ms / r[b].ms);
  const med = (v) => median(results.map((r) => r[v].ms));
  const loopVs8 = median(ratios('loop', 'fleet-8'));
  const oneVs8 = median(ratios('fleet-1', 'fleet-8'));
  const perTarget1 = med('fleet-1') / DBS;
  const perTargetLoop = med('loop') / DBS;
  const peakConn = Math.max(...results.map((r) => r['fleet-8'].peak.connections));
  const peakRss = Math.max(...results.map((r) => r['fleet-8'].peak.rssKb));
  const summary = {
    databases: DBS,
    rows: ROWS,
    rounds: ROUNDS,
    load_average: { start: load0.map((x) => +x.toFixed(2)), end: load1.map((x) => +x.toFixed(2)) },
    median_ms: { 'fleet-8': Math.round(med('fleet-8')), loop: Math.round(med('loop')), 'fleet-1': Math.round(med('fleet-1')) },
    median_ratio: { 'loop / fleet-8': +loopVs8.toFixed(2), 'fleet-1 / fleet-8': +oneVs8.toFixed(2) },
    per_target_ms: { 'fleet-1': Math.round(perTarget1), loop: Math.round(perTargetLoop), 'fleet-8 (wall / targets)': Math.round(med('fleet-8') / DBS) },
    rerun_up_to_date_ms: { 'fleet-8': Math.round(rerun), per_target: Math.round(rerun / DBS) },
    peak: { 'fleet-8 tsm connections': peakConn, 'fleet-8 RSS MB': Math.round(peakRss / 1024), 'fleet-1 RSS MB': Math.round(Math.max(...results.map((r) => r['fleet-1'].peak.rssKb)) / 1024) },
    target_met: loopVs8 >= 3,
  };
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  log(
    `fleet-8 is ${loopVs8.toFixed(2)}× faster than the loop and ${oneVs8.toFixed(2)}× faster than --parallel 1 (median of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}; load average ${load0[0].toFixed(1)} → ${load1[0].toFixed(1)})`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
  if (has('--drop')) await dropFleet(true);
  else if (!has('--keep')) await dropFleet(false);
}
