#!/usr/bin/env node
// bench/upsert-vs-pgbench/ab.mjs: this checkout's SessionStore against another build's, in ONE
// process, in alternating blocks of calls, so both see the same machine at the same moments.
//
//   node bench/upsert-vs-pgbench/ab.mjs --against /path/to/other/checkout [--clients 1,4,16] [--block 2000] [--rounds 12]
//   TSM_BENCH_DATABASE_URL=<superuser URL>   (default postgres://postgres@127.0.0.1:5432/postgres)
//
// The other checkout must be built (its dist/). Each side gets the pool its own `tsm bench` builds
// (savePoolConfig where that build has it) with `--clients` connections, and a SessionStore with
// metrics on; both are warmed up (3,000 calls) before measuring. Then, for `--rounds` rounds, each
// side runs `--block` calls (order alternating between rounds); per block: the process's CPU time
// per call (user + system) and calls/s. Reported: the median of each, per side, and the median of
// the per-round ratios. On a busy shared machine this is far steadier than separate runs, because a
// burst of other work hits both sides of a round. The database tsm_bench_ab is created, migrated
// and dropped at the end.
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const here = new URL('../..', import.meta.url).pathname;
const against = opt('against', undefined);
if (!against) {
  process.stderr.write('ab.mjs: --against <other checkout, built> is required\n');
  process.exit(2);
}
const CLIENTS = opt('clients', '1,4,16').split(',').map(Number);
const BLOCK = Number(opt('block', '2000'));
const ROUNDS = Number(opt('rounds', '12'));

const pg = (await import(join(here, 'node_modules/pg/lib/index.js'))).default;
const serverUrl = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = 'tsm_bench_ab';
const u = new URL(serverUrl);
u.pathname = '/' + DB;
const url = u.toString();
const admin = async (text) => {
  const c = new pg.Client(serverUrl);
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
};
await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
await admin(`CREATE DATABASE ${DB}`);
const m = spawnSync(process.execPath, [join(here, 'bin/tsm.js'), 'migrate', 'up', '-d', url], { encoding: 'utf8' });
if (m.status !== 0) throw new Error(`tsm migrate up failed: ${m.stderr}`);

async function side(name, root, clients) {
  const { SessionStore } = await import(join(root, 'dist/src/index.js'));
  const { resolvePg } = await import(join(root, 'dist/src/db/resolve.js'));
  const savePoolConfig = await import(join(root, 'dist/src/store/pool.js')).then((x) => x.savePoolConfig, () => undefined);
  const config = resolvePg(url).config;
  const pool = new pg.Pool(savePoolConfig ? savePoolConfig(config, 10_000, { max: clients, idleTimeoutMillis: 0 }) : { ...config, max: clients, idleTimeoutMillis: 0 });
  pool.on('error', () => {});
  const store = new SessionStore({ pool, ...(savePoolConfig ? { connectTimeoutMs: 10_000 } : {}) });
  return { name, pool, store, blocks: [] };
}

const session = Buffer.alloc(600, 7).toString('base64'); // 800 characters
async function drive(s, clients, total) {
  let left = total;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (left-- > 0) {
        const r = await s.store.save({ tenantId: 'tsm-bench', userId: `tsm-bench:ab:${Math.floor(Math.random() * 10_000)}`, sessionStringEnc: session, keyId: 'k', status: 'authorized' });
        if (!r.ok) throw new Error(`${s.name}: ${r.code}: ${r.details}`);
      }
    }),
  );
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
};

const lines = [];
for (const clients of CLIENTS) {
  const sides = [await side('other', against, clients), await side('this', here, clients)];
  for (const s of sides) await drive(s, clients, 3000);
  const loads = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of r % 2 ? [...sides].reverse() : sides) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await drive(s, clients, BLOCK);
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      s.blocks.push({ cpu: (c.user + c.system) / BLOCK, tps: (BLOCK / ms) * 1000 });
    }
    loads.push(loadavg()[0]);
  }
  const [o, t] = sides;
  const cpuRatio = median(t.blocks.map((b, i) => b.cpu / o.blocks[i].cpu));
  const tpsRatio = median(t.blocks.map((b, i) => b.tps / o.blocks[i].tps));
  lines.push(
    `| ${clients} | ${median(o.blocks.map((b) => b.cpu)).toFixed(1)} | ${median(t.blocks.map((b) => b.cpu)).toFixed(1)} | ${(cpuRatio * 100).toFixed(0)}% | ` +
      `${median(o.blocks.map((b) => b.tps)).toFixed(0)} | ${median(t.blocks.map((b) => b.tps)).toFixed(0)} | ${(tpsRatio * 100).toFixed(0)}% | ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} |`,
  );
  for (const s of sides) {
    await s.store.close();
    await s.pool.end();
  }
}
await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
console.log(`\nother: ${against}\nthis:  ${here}\n${ROUNDS} rounds of ${BLOCK} calls per side, alternating; medians\n`);
console.log('| clients | CPU µs/call, other | CPU µs/call, this | this / other (median of rounds) | calls/s, other | calls/s, this | this / other | load average |');
console.log('|---|---|---|---|---|---|---|---|');
for (const l of lines) console.log(l);
process.exit(0);
