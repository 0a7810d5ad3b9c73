#!/usr/bin/env node
// bench/migrate-under-load: the longest single write stall that 8 writers see while
// `tsm migrate up` runs on a 1,000,000-row pre-fix telegram_sessions, against the same load
// while a plain `CREATE UNIQUE INDEX` (no CONCURRENTLY) runs.
//
//   npm ci && node bench/migrate-under-load/run.mjs [--rounds N] [--rows N] [--writers N] [--rebuild] [--drop]
//   node bench/migrate-under-load/run.mjs --partitioned [--partitions 8]    # the partitioned variant
//   node bench/migrate-under-load/run.mjs [--partitioned] --quick           # 100,000 rows, 1 round: a smoke run
//
// --partitioned: telegram_sessions PARTITION BY HASH (user_id) with 8 partitions (no primary key:
// a unique index there must contain user_id; a non-unique index on id instead). tsm builds the
// unique index ON ONLY the parent, CONCURRENTLY per partition, then attaches each; the baseline is a
// plain `CREATE UNIQUE INDEX` on the parent, which builds every partition's index under a SHARE lock.
// The writers' UPDATEs name the row's user_id too (partition pruning), as an application does.
//
// Server: $TSM_BENCH_DATABASE_URL (a superuser URL), else the machine's postgres://postgres@127.0.0.1:5432/postgres.
// It builds a template database once (tsm_bench_migrate_tpl: the incident's pre-fix table, no
// unique index, 1,000,000 rows of 800-character sessions; kept for reruns unless --drop), then per
// round and variant copies it (CREATE DATABASE … TEMPLATE) so each run starts from the same state.
//
// The writers: the fix's upsert cannot run before the fix (ON CONFLICT (user_id) fails with 42P10
// until the unique index exists, and upsert_telegram_session does not exist until 0005), so each
// writer does what an application of the pre-fix schema does, as autocommit statements that work
// before, during and after the migration: 80 % UPDATE of an existing row by primary key (a session
// refresh), 20 % INSERT of a new user (a first login; user ids never repeat, so the unique index
// build is not disturbed). Each write's latency is measured; a write that overlaps the DDL window
// counts for that variant. The "longest stall" is the slowest single write in that window.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { databaseUrl, templateReady, withClient } from '../lib.mjs';

const root = new URL('../..', import.meta.url).pathname;
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const QUICK = args.includes('--quick');
const PARTITIONED = args.includes('--partitioned');
const PARTITIONS = opt('--partitions', 8);
const ROUNDS = opt('--rounds', QUICK ? 1 : 3);
const ROWS = opt('--rows', QUICK ? 100_000 : 1_000_000);
const WRITERS = opt('--writers', 8);
const SESSION_LENGTH = 800;
const SETTLE_MS = 3000; // load before and after the DDL
const TPL = PARTITIONED ? 'tsm_bench_migrate_part_tpl' : 'tsm_bench_migrate_tpl';
const RUN_DB = PARTITIONED ? 'tsm_bench_migrate_part_run' : 'tsm_bench_migrate_run';
const LAYOUT = `v1 rows=${ROWS} len=${SESSION_LENGTH}${PARTITIONED ? ` hash(user_id) partitions=${PARTITIONS}` : ''}`;

const server = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const urlOf = (db) => databaseUrl(server, db);
const log = (m) => process.stderr.write(m + '\n');

if (!existsSync(join(root, 'dist/src/cli/main.js')) || !existsSync(join(root, 'dist/migrations/0004_user_id_unique_index.js')) || !existsSync(join(root, 'dist/test/helpers/fixtures.js'))) {
  log('bench/migrate-under-load: build first (npm ci, or npx tsc -p tsconfig.json)');
  process.exit(2);
}
const { preFixSchema, PRE_FIX_COLUMNS } = await import(join(root, 'dist/test/helpers/fixtures.js'));

async function buildTemplate() {
  const t0 = Date.now();
  log(`building ${TPL}: pre-fix table with ${ROWS.toLocaleString('en')} rows …`);
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${TPL} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${TPL}`);
  });
  await withClient(urlOf(TPL), async (c) => {
    if (PARTITIONED) await c.query(partitionedPreFix());
    else await c.query(preFixSchema('public'));
    await c.query(
      `INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at)
       SELECT 'tenant-' || (g % 50), (100000000 + g)::text,
              left(repeat(md5(g::text), ${Math.ceil(SESSION_LENGTH / 32)}), ${SESSION_LENGTH}), 'k1', 'active',
              now() - g * interval '1 second', now()
         FROM generate_series(1, $1::int) g`,
      [ROWS],
    );
    await c.query(`COMMENT ON TABLE public.telegram_sessions IS '${LAYOUT}'`);
    await c.query('VACUUM ANALYZE public.telegram_sessions');
  });
  log(`  built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

/** The pre-fix table partitioned by HASH (user_id); an index on id (not unique: it could not be) for the writers' updates. */
function partitionedPreFix() {
  const parts = Array.from(
    { length: PARTITIONS },
    (_, i) => `CREATE TABLE public.telegram_sessions_p${i} PARTITION OF public.telegram_sessions FOR VALUES WITH (MODULUS ${PARTITIONS}, REMAINDER ${i});`,
  );
  return `
CREATE TABLE public.telegram_sessions (${PRE_FIX_COLUMNS}) PARTITION BY HASH (user_id);
${parts.join('\n')}
CREATE INDEX telegram_sessions_id ON public.telegram_sessions (id);`;
}

async function freshRunDb() {
  await withClient(server, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${RUN_DB} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${RUN_DB} TEMPLATE ${TPL}`);
  });
  // Warm the cache the same way for both variants.
  await withClient(urlOf(RUN_DB), (c) => c.query('SELECT count(*) FROM public.telegram_sessions'));
}

/** 8 writers; returns stop() → every write as [start, end] in ms (performance.now()). */
async function startWriters(url, sampleIds) {
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
  const session = (n) => left(n);
  const loops = clients.map(async (c, w) => {
    let seq = 0;
    while (!stop) {
      seq++;
      const t = performance.now();
      try {
        if (Math.random() < 0.8) {
          const { id, user_id } = sampleIds[Math.floor(Math.random() * sampleIds.length)];
          if (PARTITIONED) {
            await c.query('UPDATE public.telegram_sessions SET session_string_enc = $1, updated_at = now() WHERE id = $2 AND user_id = $3', [session(seq), id, user_id]);
          } else {
            await c.query('UPDATE public.telegram_sessions SET session_string_enc = $1, updated_at = now() WHERE id = $2', [session(seq), id]);
          }
        } else {
          await c.query(
            `INSERT INTO public.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status) VALUES ('tenant-bench', $1, $2, 'k1', 'active')`,
            [`w${w}-${seq}-${Date.now()}`, session(seq)],
          );
        }
        writes.push([t, performance.now()]);
      } catch (err) {
        errors.push(`${err.code ?? ''} ${err.message}`);
      }
    }
  });
  return async () => {
    stop = true;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.end()));
    return { writes, errors };
  };
}

function left(seq) {
  const base = 'AQAAAAEAAABk' + String(seq).padStart(12, '0');
  return base.repeat(Math.ceil(SESSION_LENGTH / base.length)).slice(0, SESSION_LENGTH);
}

function runTsmUp(url) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'bin/tsm.js'), 'migrate', 'up', '--json', '-d', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`tsm migrate up exited ${code}: ${err}`))));
  });
}

async function plainIndex(url) {
  await withClient(url, (c) =>
    c.query('CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON public.telegram_sessions (user_id) WHERE user_id IS NOT NULL'),
  );
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function stats(writes, from, to) {
  const inWindow = writes.filter(([s, e]) => e >= from && s <= to).map(([s, e]) => e - s);
  inWindow.sort((a, b) => a - b);
  const q = (p) => inWindow[Math.min(inWindow.length - 1, Math.floor(p * inWindow.length))] ?? 0;
  return { writes: inWindow.length, max: inWindow.at(-1) ?? 0, p99: q(0.99), p50: q(0.5) };
}

async function runVariant(variant) {
  await freshRunDb();
  const url = urlOf(RUN_DB);
  const sampleIds = await withClient(url, async (c) =>
    (await c.query('SELECT id, user_id FROM public.telegram_sessions TABLESAMPLE SYSTEM (2) LIMIT 20000')).rows,
  );
  const stop = await startWriters(url, sampleIds);
  await sleep(SETTLE_MS);
  const t0 = performance.now();
  let detail = '';
  if (variant === 'tsm') {
    const r = await runTsmUp(url);
    detail = r.steps.map((s) => `${s.name.slice(0, 4)} ${s.ms} ms`).join(', ');
  } else {
    await plainIndex(url);
  }
  const t1 = performance.now();
  await sleep(SETTLE_MS);
  const { writes, errors } = await stop();
  const base = stats(writes, 0, t0 - 200);
  const during = stats(writes, t0, t1);
  return { variant, ddl_ms: Math.round(t1 - t0), base, during, errors, detail };
}

const fmt = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

const load = () => loadavg().map((x) => Math.round(x * 100) / 100);
const loadBefore = load();
log(`layout: ${LAYOUT}; load average ${loadBefore.join(' ')}`);
if (!(await templateReady(server, TPL, LAYOUT)) || args.includes('--rebuild')) await buildTemplate();
const results = [];
for (let round = 1; round <= ROUNDS; round++) {
  for (const variant of round % 2 === 1 ? ['tsm', 'plain'] : ['plain', 'tsm']) {
    const r = await runVariant(variant);
    results.push(r);
    log(
      `round ${round} ${variant.padEnd(5)}: DDL ${fmt(r.ddl_ms)}; writes during it ${r.during.writes}, longest ${fmt(r.during.max)}, ` +
        `p99 ${fmt(r.during.p99)}, p50 ${fmt(r.during.p50)}; before it longest ${fmt(r.base.max)}; errors ${r.errors.length}` +
        (r.detail ? `\n           ${r.detail}` : ''),
    );
    if (r.errors.length > 0) log(`  first error: ${r.errors[0]}`);
  }
}
await withClient(server, (c) => c.query(`DROP DATABASE IF EXISTS ${RUN_DB} WITH (FORCE)`));
if (args.includes('--drop')) await withClient(server, (c) => c.query(`DROP DATABASE IF EXISTS ${TPL} WITH (FORCE)`));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const tsmMax = median(results.filter((r) => r.variant === 'tsm').map((r) => r.during.max));
const plainMax = median(results.filter((r) => r.variant === 'plain').map((r) => r.during.max));
const ratio = tsmMax / plainMax;
// Rounds alternate which variant goes first; each round's pair gives one ratio.
const pairRatios = [];
for (let i = 0; i + 1 < results.length; i += 2) {
  const [a, b] = [results[i], results[i + 1]];
  const t = a.variant === 'tsm' ? a : b;
  const p = a.variant === 'tsm' ? b : a;
  pairRatios.push(Math.round((t.during.max / p.during.max) * 1000) / 1000);
}
console.log(
  JSON.stringify(
    {
      layout: PARTITIONED ? `partitioned: HASH (user_id), ${PARTITIONS} partitions` : 'plain table',
      rows: ROWS,
      writers: WRITERS,
      rounds: ROUNDS,
      load_average: { before: loadBefore, after: load() },
      median_longest_stall_ms: { tsm_migrate_up: Math.round(tsmMax * 10) / 10, plain_create_unique_index: Math.round(plainMax * 10) / 10 },
      ratio: Math.round(ratio * 1000) / 1000,
      pair_ratios: pairRatios,
      median_pair_ratio: median(pairRatios),
      target_met: ratio < 0.1,
      runs: results.map((r) => ({ variant: r.variant, ddl_ms: r.ddl_ms, during: r.during, before_max_ms: r.base.max, errors: r.errors.length })),
    },
    null,
    2,
  ),
);
