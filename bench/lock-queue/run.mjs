#!/usr/bin/env node
// bench/lock-queue: the lock queue behind a migration's ALTER TABLE (issue 10).
//
// An idle transaction holds ACCESS SHARE on telegram_sessions for --blocker seconds (20 by
// default); 8 writers keep writing; one second into the blocker, either `tsm migrate up` (the
// defaults, or each --lock-timeout of --sweep) or a plain `ALTER TABLE … ADD COLUMN` (what a
// hand-run fix does: it waits for as long as the idle transaction lasts, and every writer queues
// behind it) starts. Measured: the longest single write of the writers over the whole run (the
// "longest stall"), how many writes took over 200 ms, and how long after the blocker ended the DDL
// got through. Variants alternate (tsm, plain, plain, tsm, …) and the result is the median of the
// per-round ratios tsm / plain, with the load average at the time (the machine may be shared).
//
//   npm ci && node bench/lock-queue/run.mjs [--rounds 3] [--blocker 20] [--writers 8]
//   node bench/lock-queue/run.mjs --quick                       # 1 round, 8 s blocker
//   node bench/lock-queue/run.mjs --sweep 250ms,500ms,1s,2s,5s  # tsm only, one run per --lock-timeout
//
// Server: $TSM_BENCH_DATABASE_URL (a superuser URL), else the machine's
// postgres://postgres@127.0.0.1:5432/postgres. Each run gets a fresh database
// (tsm_bench_lockq_run: the pre-fix table with 10,000 rows), dropped at the end.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { databaseUrl, withClient } from '../lib.mjs';

const root = new URL('../..', import.meta.url).pathname;
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const QUICK = args.includes('--quick');
const ROUNDS = Number(opt('--rounds', QUICK ? 1 : 3));
const BLOCKER_MS = Number(opt('--blocker', QUICK ? 8 : 20)) * 1000;
const WRITERS = Number(opt('--writers', 8));
const SWEEP = opt('--sweep', null)?.split(',').filter(Boolean) ?? null;
const ROWS = 10_000;
const LEAD_MS = 1000; // the blocker starts, then the DDL a second later
const SETTLE_MS = 2000; // load before and after
const RUN_DB = 'tsm_bench_lockq_run';
const SLOW_MS = 200;

const server = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const urlOf = (db) => databaseUrl(server, db);
const log = (m) => process.stderr.write(m + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (!existsSync(join(root, 'dist/src/cli/main.js')) || !existsSync(join(root, 'dist/test/helpers/fixtures.js'))) {
  log('bench/lock-queue: build first (npm ci && npm run build)');
  process.exit(2);
}
const { preFixSchema } = await import(join(root, 'dist/test/helpers/fixtures.js'));

async function freshRunDb() {
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${RUN_DB} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${RUN_DB}`);
  });
  await withClient(urlOf(RUN_DB), async (c) => {
    await c.query(preFixSchema('public'));
    await c.query(
      `INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
       SELECT 't-1', 'u-' || g, repeat('A', 268), 'k1', 'active' FROM generate_series(1, $1::int) g`,
      [ROWS],
    );
    await c.query('VACUUM ANALYZE public.telegram_sessions');
  });
}

/** Writers: 80 % UPDATE by user id, 20 % INSERT; every write timed as [start, end] (performance.now()). */
async function startWriters(url) {
  const clients = await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      const c = new pg.Client({ connectionString: url, application_name: 'tsm-bench-writer' });
      await c.connect();
      return c;
    }),
  );
  const writes = [];
  const errors = [];
  let stop = false;
  const loops = clients.map(async (c, w) => {
    for (let seq = 0; !stop; seq++) {
      const t = performance.now();
      try {
        if (seq % 5 !== 4) {
          await c.query(`UPDATE public.telegram_sessions SET session_string_enc = repeat('B', 268), updated_at = now() WHERE user_id = $1`, [
            `u-${1 + Math.floor(Math.random() * ROWS)}`,
          ]);
        } else {
          await c.query(`INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status) VALUES ('t-1', $1, repeat('C', 268), 'k1', 'active')`, [
            `w${w}-${seq}-${Date.now()}`,
          ]);
        }
        writes.push([t, performance.now()]);
      } catch (err) {
        errors.push(`${err.code ?? ''} ${err.message}`);
      }
      await sleep(2);
    }
  });
  return async () => {
    stop = true;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.end()));
    return { writes, errors };
  };
}

function runTsmUp(url, lockTimeout) {
  const extra = lockTimeout ? ['--lock-timeout', lockTimeout] : [];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'bin/tsm.js'), 'migrate', 'up', '--json', ...extra, '-d', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`tsm migrate up exited ${code}: ${err.trim().split('\n').at(-1)}`))));
  });
}

/** What a hand-run fix does: the ALTER of 0003, no lock_timeout. */
async function plainAlter(url) {
  await withClient(url, (c) => c.query('ALTER TABLE public.telegram_sessions ADD COLUMN auth_error text, ADD COLUMN error_details text'));
}

async function runOne(variant, lockTimeout) {
  await freshRunDb();
  const url = urlOf(RUN_DB);
  const stop = await startWriters(url);
  await sleep(SETTLE_MS);
  const blocker = new pg.Client({ connectionString: url, application_name: 'tsm-bench-blocker' });
  await blocker.connect();
  await blocker.query('BEGIN');
  await blocker.query('SELECT count(*) FROM public.telegram_sessions'); // ACCESS SHARE until COMMIT
  const blockerStart = performance.now();
  const released = sleep(BLOCKER_MS).then(() => blocker.query('COMMIT'));
  await sleep(LEAD_MS);
  const t0 = performance.now();
  let attempts = null;
  if (variant === 'tsm') {
    const r = await runTsmUp(url, lockTimeout);
    attempts = r.steps.find((s) => s.name === '0003_diagnostic_columns')?.attempts ?? null;
  } else {
    await plainAlter(url);
  }
  const t1 = performance.now();
  await released;
  await blocker.end();
  const blockerEnd = blockerStart + BLOCKER_MS;
  await sleep(SETTLE_MS);
  const { writes, errors } = await stop();
  const lat = writes.map(([s, e]) => e - s);
  return {
    variant,
    lock_timeout: variant === 'tsm' ? lockTimeout ?? 'default' : null,
    longest_ms: Math.round(Math.max(...lat)),
    slow_writes: lat.filter((x) => x > SLOW_MS).length,
    writes: lat.length,
    ddl_ms: Math.round(t1 - t0),
    through_after_blocker_ms: Math.round(t1 - blockerEnd),
    attempts,
    errors: errors.length,
    first_error: errors[0],
  };
}

const show = (r) =>
  `${r.variant.padEnd(5)}${r.lock_timeout ? ` (--lock-timeout ${r.lock_timeout})` : ''}: longest write ${r.longest_ms} ms; ${r.slow_writes} of ${r.writes} writes over ${SLOW_MS} ms; ` +
  `DDL done ${(r.through_after_blocker_ms / 1000).toFixed(1)} s after the blocker ended${r.attempts !== null ? ` (0003: ${r.attempts} attempts)` : ''}; errors ${r.errors}`;

const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
log(`bench/lock-queue: ${WRITERS} writers, blocker ${BLOCKER_MS / 1000} s, ${SWEEP ? `sweep ${SWEEP.join(', ')}` : `${ROUNDS} round(s)`}; load average ${load()}`);
const results = [];
try {
  if (SWEEP) {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const lt of SWEEP) {
        const r = await runOne('tsm', lt);
        results.push(r);
        log(`round ${round} ${show(r)}`);
      }
    }
  } else {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const variant of round % 2 === 1 ? ['tsm', 'plain'] : ['plain', 'tsm']) {
        const r = await runOne(variant, null);
        r.round = round;
        results.push(r);
        log(`round ${round} ${show(r)}`);
      }
    }
  }
} finally {
  await withClient(server, (c) => c.query(`DROP DATABASE IF EXISTS ${RUN_DB} WITH (FORCE)`)).catch(() => {});
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? null : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const summary = { writers: WRITERS, blocker_s: BLOCKER_MS / 1000, load_average_end: load(), runs: results };
if (!SWEEP) {
  const ratios = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const t = results.find((r) => r.round === round && r.variant === 'tsm');
    const p = results.find((r) => r.round === round && r.variant === 'plain');
    if (t && p) ratios.push(t.longest_ms / p.longest_ms);
  }
  summary.median_longest_write_ms = {
    tsm_migrate_up: median(results.filter((r) => r.variant === 'tsm').map((r) => r.longest_ms)),
    plain_alter_table: median(results.filter((r) => r.variant === 'plain').map((r) => r.longest_ms)),
  };
  summary.median_ratio_tsm_vs_plain = Math.round(median(ratios) * 1000) / 1000;
  summary.target_met = summary.median_longest_write_ms.tsm_migrate_up <= 1000;
} else {
  summary.by_lock_timeout = Object.fromEntries(
    SWEEP.map((lt) => {
      const rs = results.filter((r) => r.lock_timeout === lt);
      return [lt, { median_longest_write_ms: median(rs.map((r) => r.longest_ms)), median_through_after_blocker_ms: median(rs.map((r) => r.through_after_blocker_ms)) }];
    }),
  );
}
console.log(JSON.stringify(summary, null, 2));
