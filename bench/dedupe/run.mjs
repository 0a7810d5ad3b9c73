#!/usr/bin/env node
// bench/dedupe: `tsm dedupe` against the one statement that does the same move (a window-ranked
// `WITH moved AS (DELETE … RETURNING) INSERT INTO archive`), on copies of one template database,
// alternating which goes first, and the longest row-lock hold of each side.
//
//   npm ci && node bench/dedupe/run.mjs [--runs 3] [--quick] [--rows N] [--users N]
//                                       [--clustered] [--baseline-work-mem 64MB] [--tsm-bin PATH]
//                                       [--rebuild] [--drop] [--json]
// (--tsm-bin: another build's bin/tsm.js, e.g. an older version, to compare against the same baseline.)
//
// Server: $TSM_BENCH_DATABASE_URL (a superuser URL), else the machine's postgres://postgres@127.0.0.1:5432/postgres.
// The template (the incident's pre-fix table: 1,000,000 rows of 268-character sessions for 800,000
// user_ids, 200,000 of them with a second row, so 200,000 rows to move; rows in random physical
// order, or grouped by user with --clustered) is built once and kept for reruns: `--rebuild`
// builds it again, `--drop` removes it at the end. `--quick`: a tenth of the size, its own template.
//
// Each run copies the template twice (CREATE DATABASE … TEMPLATE, then CHECKPOINT, so both sides
// start the same way): the baseline's archive is created first (untimed; tsm creates its own,
// timed), then
//   - baseline: the one statement, timed on the server connection (its row locks: all 200,000,
//     held for the whole statement), with the server's work_mem unless --baseline-work-mem is
//     given (tsm's own scans use 64MB);
//   - tsm: `node bin/tsm.js dedupe --json`, the whole process timed (Node start, connect, every
//     check, every batch, the row-by-row check), plus its longest batch (first row lock to COMMIT).
// Reported: each pair's ratio tsm / baseline and their median; the load average when each pair ran.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
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
const scale = QUICK ? 10 : 1;
const RUNS = opt('--runs', QUICK ? 1 : 3);
const ROWS = opt('--rows', 1_000_000 / scale);
const USERS = opt('--users', 800_000 / scale);
const MOVED = ROWS - USERS; // users 1 … MOVED get a second row
const CLUSTERED = has('--clustered');
const BASELINE_WORK_MEM = (() => {
  const i = args.indexOf('--baseline-work-mem');
  if (i < 0) return null;
  const v = args[i + 1] ?? '';
  if (!/^\d+(kB|MB|GB)$/.test(v)) {
    process.stderr.write('bench/dedupe: --baseline-work-mem takes a size like 64MB\n');
    process.exit(2);
  }
  return v;
})();
const SESSION_LENGTH = 268;
const TPL = `tsm_bench_dedupe_${QUICK ? 'quick_' : ''}${CLUSTERED ? 'clustered_' : ''}tpl`;
const RUN_DB = 'tsm_bench_dedupe_run';
const LAYOUT = `v1 rows=${ROWS} users=${USERS} len=${SESSION_LENGTH} ${CLUSTERED ? 'clustered' : 'random'}`;

const TSM_BIN = (() => {
  const i = args.indexOf('--tsm-bin');
  return i >= 0 ? args[i + 1] : join(root, 'bin/tsm.js');
})();
const server = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const urlOf = (db) => databaseUrl(server, db);
const log = (m) => process.stderr.write(m + '\n');

if (!(MOVED > 0 && MOVED <= USERS)) {
  log('bench/dedupe: need users < rows <= 2 × users');
  process.exit(2);
}
if (!existsSync(join(root, 'dist/src/cli/main.js'))) {
  log('bench/dedupe: build first (npm ci, or npx tsc -p tsconfig.json)');
  process.exit(2);
}

async function buildTemplate() {
  const t0 = Date.now();
  log(`building ${TPL}: ${ROWS.toLocaleString('en')} rows, ${USERS.toLocaleString('en')} user_ids, ${MOVED.toLocaleString('en')} rows to move …`);
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${TPL} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${TPL}`);
  });
  const { preFixSchema } = await import(join(root, 'dist/test/helpers/fixtures.js'));
  await withClient(urlOf(TPL), async (c) => {
    await c.query(preFixSchema('public'));
    // updated_at: the second row of a user is newer for even users, older for odd ones, so the
    // kept row is sometimes the first written, sometimes not.
    await c.query(`INSERT INTO telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at)
      SELECT 'tenant-' || (u % 10), (100000000 + u)::text, left(repeat(md5(u::text || '/' || k), 9), ${SESSION_LENGTH}), 'key-1', 'active',
             timestamptz '2024-01-01' + (u % 1000) * interval '1 minute',
             timestamptz '2024-06-01' + CASE WHEN u % 2 = 0 THEN k ELSE -k END * interval '1 hour' + (u % 977) * interval '1 second'
        FROM (SELECT u, 1 AS k FROM generate_series(1, ${USERS}) u UNION ALL SELECT u, 2 FROM generate_series(1, ${MOVED}) u) s
       ORDER BY ${CLUSTERED ? 'u, k' : 'random()'}`);
    await c.query('VACUUM (ANALYZE, FREEZE) telegram_sessions');
    await c.query(`COMMENT ON TABLE telegram_sessions IS '${LAYOUT}'`);
  });
  log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

async function freshCopy() {
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${RUN_DB} WITH (FORCE)`);
    const v = (await c.query(`SELECT current_setting('server_version_num')::int AS v`)).rows[0].v;
    await c.query(`CREATE DATABASE ${RUN_DB} TEMPLATE ${TPL}${v >= 150000 ? ' STRATEGY FILE_COPY' : ''}`);
    await c.query('CHECKPOINT');
  });
}

const COLS = 'id, tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at';
const ARCHIVE_DDL = `CREATE TABLE telegram_sessions_duplicates_archive (
  id uuid, tenant_id varchar(255), user_id varchar(255), session_string_enc text, key_id varchar(64), status varchar(20),
  created_at timestamptz, updated_at timestamptz, archived_at timestamptz NOT NULL DEFAULT now(), kept_id uuid);
CREATE INDEX telegram_sessions_duplicates_archive_id_idx ON telegram_sessions_duplicates_archive (id);
CREATE INDEX telegram_sessions_duplicates_archive_user_id_idx ON telegram_sessions_duplicates_archive (user_id);`;
const ONE_STATEMENT = `WITH ranked AS (
  SELECT id, row_number() OVER w AS rn, first_value(id) OVER w AS kept
    FROM telegram_sessions WHERE user_id IS NOT NULL
  WINDOW w AS (PARTITION BY user_id ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST, id DESC)
), moved AS (
  DELETE FROM telegram_sessions t USING ranked r WHERE t.id = r.id AND r.rn > 1
  RETURNING t.*, r.kept
)
INSERT INTO telegram_sessions_duplicates_archive (${COLS}, archived_at, kept_id)
SELECT ${COLS}, now(), kept FROM moved`;

// CPU time (user + system) of processes on this machine, from /proc: a figure that a loaded
// machine stretches much less than wall time. Only when the server runs here and /proc/<pid> of
// its backends can be read (as root, or as the postgres user); otherwise null.
const TICK_MS = 10; // USER_HZ is 100 on Linux
function cpuMs(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * TICK_MS; // utime, stime (fields 14, 15)
  } catch {
    return null;
  }
}
const serverIsLocal = ['127.0.0.1', 'localhost', '::1', ''].includes(new URL(server).hostname);

/** Polls the CPU time of the run database's tsm backends (every 20 ms) and of `pid`; the last readings count. */
function cpuWatcher(pid) {
  const last = new Map();
  let stopped = false;
  const admin = new pg.Client({ connectionString: server, application_name: 'tsm-bench' });
  const done = (async () => {
    await admin.connect();
    while (!stopped) {
      const r = await admin.query(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tsm'`, [RUN_DB]);
      for (const p of [pid, ...r.rows.map((x) => x.pid)]) {
        const v = cpuMs(p);
        if (v !== null) last.set(p, v);
      }
      await new Promise((res) => setTimeout(res, 20));
    }
    await admin.end();
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      if (!serverIsLocal || last.size < 2) return null; // the client alone, or nothing readable
      const client = last.get(pid) ?? 0;
      const total = [...last.values()].reduce((a, b) => a + b, 0);
      return { total, client, server: total - client };
    },
  };
}

async function baseline() {
  await freshCopy();
  return withClient(urlOf(RUN_DB), async (c) => {
    await c.query(ARCHIVE_DDL);
    if (BASELINE_WORK_MEM) await c.query(`SET work_mem = '${BASELINE_WORK_MEM}'`);
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const cpu0 = serverIsLocal ? cpuMs(pid) : null;
    const t0 = performance.now();
    const r = await c.query(ONE_STATEMENT);
    const ms = performance.now() - t0;
    const cpu1 = serverIsLocal ? cpuMs(pid) : null;
    if (r.rowCount !== MOVED) throw new Error(`baseline moved ${r.rowCount}, expected ${MOVED}`);
    return { ms, lockMs: ms, cpuMs: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null };
  });
}

function tsm() {
  return new Promise((resolve, reject) => {
    freshCopy().then(() => {
      const t0 = performance.now();
      const child = spawn(process.execPath, [TSM_BIN, 'dedupe', '-d', urlOf(RUN_DB), '--json'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NO_COLOR: '1' },
      });
      const watch = cpuWatcher(child.pid);
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      child.on('close', (code) => {
        const ms = performance.now() - t0;
        watch.stop().then((cpu) => {
          if (code !== 0) return reject(new Error(`tsm dedupe exited ${code}: ${err.trim()}`));
          const j = JSON.parse(out);
          if (j.archived !== MOVED || !j.verification?.ok) return reject(new Error(`tsm moved ${j.archived}, expected ${MOVED}`));
          resolve({ ms, cpuMs: cpu?.total ?? null, clientCpuMs: cpu?.client ?? null, lockMs: j.longest_batch_ms ?? null, medianLockMs: j.median_batch_ms ?? null, batches: j.batches, engineMs: j.elapsed_ms ?? null, phases: j.phases_ms ?? null });
        }, reject);
      });
    }, reject);
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sec = (ms) => `${(ms / 1000).toFixed(2)} s`;

if (has('--rebuild') || !(await templateReady(server, TPL, LAYOUT))) await buildTemplate();
const pairs = [];
try {
  for (let i = 0; i < RUNS; i++) {
    const load = loadavg()[0];
    const order = i % 2 === 0 ? ['baseline', 'tsm'] : ['tsm', 'baseline'];
    const got = {};
    for (const side of order) {
      got[side] = side === 'tsm' ? await tsm() : await baseline();
      log(
        `run ${i + 1}/${RUNS} ${side}: ${sec(got[side].ms)}` +
          (side === 'tsm'
            ? ` (longest batch ${got.tsm.lockMs} ms, ${got.tsm.batches} batches, phases ${JSON.stringify(got.tsm.phases)}, CPU ${got.tsm.cpuMs} ms of which the client ${got.tsm.clientCpuMs} ms)`
            : ` (CPU ${got.baseline.cpuMs} ms)`),
      );
    }
    pairs.push({ run: i + 1, first: order[0], load, baseline: got.baseline, tsm: got.tsm, ratio: got.tsm.ms / got.baseline.ms });
  }
} finally {
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${RUN_DB} WITH (FORCE)`);
    if (has('--drop')) await c.query(`DROP DATABASE IF EXISTS ${TPL} WITH (FORCE)`);
  });
}

const summary = {
  rows: ROWS,
  users: USERS,
  moved: MOVED,
  layout: CLUSTERED ? 'clustered' : 'random',
  baseline_work_mem: BASELINE_WORK_MEM ?? 'server default',
  runs: RUNS,
  median_ratio: median(pairs.map((p) => p.ratio)),
  median_baseline_ms: median(pairs.map((p) => p.baseline.ms)),
  median_tsm_ms: median(pairs.map((p) => p.tsm.ms)),
  longest_tsm_batch_ms: Math.max(...pairs.map((p) => p.tsm.lockMs)),
  median_cpu_ratio: pairs.every((p) => p.tsm.cpuMs && p.baseline.cpuMs) ? median(pairs.map((p) => p.tsm.cpuMs / p.baseline.cpuMs)) : null,
  pairs,
};
if (has('--json')) {
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
} else {
  const lines = [
    `tsm dedupe vs the one statement: ${ROWS.toLocaleString('en')} rows, ${USERS.toLocaleString('en')} user_ids, ${MOVED.toLocaleString('en')} rows moved (${summary.layout} layout; one statement with work_mem ${summary.baseline_work_mem})`,
    '',
    '| run | load avg | one statement (= its row-lock hold) | tsm dedupe (whole CLI) | tsm / one statement | CPU: one statement / tsm (server + client) | CPU ratio | tsm longest batch (row locks) | tsm median batch | batches |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...pairs.map(
      (p) =>
        `| ${p.run} (${p.first} first) | ${p.load.toFixed(1)} | ${sec(p.baseline.ms)} | ${sec(p.tsm.ms)} | ${p.ratio.toFixed(2)}× | ` +
        `${p.baseline.cpuMs !== null && p.tsm.cpuMs !== null ? `${sec(p.baseline.cpuMs)} / ${sec(p.tsm.cpuMs)} | ${(p.tsm.cpuMs / p.baseline.cpuMs).toFixed(2)}×` : 'n/a | n/a'} | ` +
        `${p.tsm.lockMs} ms | ${p.tsm.medianLockMs} ms | ${p.tsm.batches} |`,
    ),
    '',
    `median of the pairs' ratios: ${summary.median_ratio.toFixed(2)}× (target: within 2×)` +
      `${summary.median_cpu_ratio !== null ? `; of their CPU times: ${summary.median_cpu_ratio.toFixed(2)}×` : ''}` +
      `; longest row-lock hold: tsm ${summary.longest_tsm_batch_ms} ms, one statement ${sec(Math.max(...pairs.map((p) => p.baseline.lockMs)))}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
