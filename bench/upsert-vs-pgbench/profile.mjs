#!/usr/bin/env node
// bench/upsert-vs-pgbench/profile.mjs: where SessionStore.save()'s client time goes, per call.
//
//   node bench/upsert-vs-pgbench/profile.mjs [--clients 1] [--calls 20000] [--out FILE.cpuprofile]
//                                            [--no-metrics] [--build DIR]   (DIR: another checkout's root, built)
//   TSM_BENCH_DATABASE_URL=<superuser URL>   (default postgres://postgres@127.0.0.1:5432/postgres)
//
// Runs what `tsm bench` runs (a pg pool built from tsm's libpq-resolved config, one SessionStore
// with metrics on, 800-character sessions, random user ids out of 10,000) in this process, with
// the V8 CPU profiler (node:inspector) on for the measured calls only (module loading, connecting
// and the warm-up are left out). Prints the samples grouped by where the code lives, in µs per
// call: Node's own JavaScript (streams, net, timers, promises), the native write, pg, pg-protocol,
// pg-pool, prom-client, tsm's store, idle (waiting for the server) and GC. The database
// tsm_bench_profile is created, migrated with `tsm migrate up` and dropped at the end.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const here = new URL('../..', import.meta.url).pathname;
const root = opt('build', here);
const pg = (await import(join(here, 'node_modules/pg/lib/index.js'))).default;
const { SessionStore } = await import(join(root, 'dist/src/index.js'));
const { resolvePg } = await import(join(root, 'dist/src/db/resolve.js'));
// The pool as that build's `tsm bench` makes it (savePoolConfig where it exists).
const savePoolConfig = await import(join(root, 'dist/src/store/pool.js')).then((m) => m.savePoolConfig, () => undefined);
const CLIENTS = Number(opt('clients', '1'));
const CALLS = Number(opt('calls', '20000'));
const OUT = opt('out', undefined);
const metrics = !args.includes('--no-metrics');

const serverUrl = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = 'tsm_bench_profile';
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
const m = spawnSync(process.execPath, [join(root, 'bin/tsm.js'), 'migrate', 'up', '-d', url], { encoding: 'utf8' });
if (m.status !== 0) throw new Error(`tsm migrate up failed: ${m.stderr}`);

// As `tsm bench` builds it: tsm's resolved config, no idle timer.
const config = resolvePg(url).config;
const pool = new pg.Pool(savePoolConfig ? savePoolConfig(config, 10_000, { max: CLIENTS, idleTimeoutMillis: 0 }) : { ...config, max: CLIENTS, idleTimeoutMillis: 0 });
pool.on('error', () => {});
const store = new SessionStore({ pool, metrics, ...(savePoolConfig ? { connectTimeoutMs: 10_000 } : {}) });
const session = Buffer.alloc(600, 7).toString('base64'); // 800 characters
const ids = Array.from({ length: 10_000 }, (_, i) => `tsm-bench:profile:${i}`);

async function drive(total) {
  let left = total;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (left-- > 0) {
        const r = await store.save({ tenantId: 'tsm-bench', userId: ids[Math.floor(Math.random() * ids.length)], sessionStringEnc: session, keyId: 'k', status: 'authorized' });
        if (!r.ok) throw new Error(`${r.code}: ${r.details}`);
      }
    }),
  );
}

await drive(3000); // connect, prepare, warm the JIT
// The client's CPU per call without the profiler (the profiler itself costs CPU).
const b0 = process.cpuUsage();
const w0 = performance.now();
await drive(CALLS);
const plainWall = performance.now() - w0;
const plain = process.cpuUsage(b0);
const inspector = new Session();
inspector.connect();
await inspector.post('Profiler.enable');
await inspector.post('Profiler.setSamplingInterval', { interval: 100 });
await inspector.post('Profiler.start');
const c0 = process.cpuUsage();
const t0 = performance.now();
await drive(CALLS);
const wall = performance.now() - t0;
const cpu = process.cpuUsage(c0);
const { profile } = await inspector.post('Profiler.stop');
inspector.disconnect();
await store.close();
await pool.end();
await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
if (OUT) writeFileSync(OUT, JSON.stringify(profile));

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const groupOf = (n) => {
  const url = n.callFrame.url;
  const f = n.callFrame.functionName;
  if (f === '(idle)') return 'idle (waiting for the server)';
  if (f === '(garbage collector)') return 'garbage collector';
  if (f === '(program)') return 'V8/native, not attributed (program)';
  if (url.includes('prom-client')) return 'prom-client (metrics)';
  if (url.includes('pg-pool')) return 'pg-pool';
  if (url.includes('pg-protocol')) return 'pg-protocol (message parsing)';
  if (url.includes('node_modules/pg/')) return 'pg (client, connection)';
  if (url.includes('/dist/src/db/')) return 'tsm db (TLS socket wrapper)';
  if (url.includes('/dist/src/store/')) return 'tsm store (save, UpsertCall, encoder)';
  if (url.includes('profile.mjs')) return 'this driver';
  if (url.includes('/dist/src/')) return 'tsm (other)';
  if (url.startsWith('node:')) return `Node JS: ${url.replace('node:internal/', '').replace(/^node:/, '').split('/')[0].replace(/_.*$/, '')}`;
  if (url === '') return `native: ${f}`;
  return url;
};
const total = new Map();
let sampled = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const g = groupOf(byId.get(profile.samples[i]));
  const d = profile.timeDeltas[i] ?? 0;
  total.set(g, (total.get(g) ?? 0) + d);
  sampled += d;
}
console.log(`\n${root}: ${CLIENTS} client(s), ${CALLS} calls, metrics ${metrics ? 'on' : 'off'}, load average ${loadavg()[0].toFixed(1)}`);
console.log(`without the profiler: ${((CALLS / plainWall) * 1000).toFixed(0)} calls/s, process CPU ${((plain.user + plain.system) / CALLS).toFixed(1)} µs/call ` +
  `(user ${(plain.user / CALLS).toFixed(1)}, system ${(plain.system / CALLS).toFixed(1)})`);
console.log(`with the profiler: ${((CALLS / wall) * 1000).toFixed(0)} calls/s, process CPU ${((cpu.user + cpu.system) / CALLS).toFixed(1)} µs/call, wall ${((wall * 1000) / CALLS).toFixed(1)} µs/call\n`);
console.log('| where (self time of the sampled frames) | µs per call | share of sampled time |');
console.log('|---|---|---|');
for (const [g, t] of [...total].sort((a, b) => b[1] - a[1])) {
  if (t / CALLS < 0.2) continue;
  console.log(`| ${g} | ${(t / CALLS).toFixed(1)} | ${((100 * t) / sampled).toFixed(1)}% |`);
}
process.exit(0);
