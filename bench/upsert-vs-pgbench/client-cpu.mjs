#!/usr/bin/env node
// bench/upsert-vs-pgbench/client-cpu.mjs: where the client's CPU goes, per upsert call.
//
//   node bench/upsert-vs-pgbench/client-cpu.mjs [--clients 16] [--calls 20000] [--repeat 3]
//   TSM_BENCH_DATABASE_URL=<superuser URL>   (default postgres://postgres@127.0.0.1:5432/postgres)
//
// On a machine where the client and PostgreSQL share the CPUs, every µs the client spends per
// call is taken from the server, so throughput follows (server CPU + client CPU) per call. This
// measures the client side alone: this process's CPU time (user + system) per call, the same
// upsert through five client paths, in one database (tsm_bench_client_cpu, dropped at the end):
//   pg Query        client.query({ name, text, values }): pg's own prepared statement
//   UpsertCall      tsm's submittable on a plain pg client (Bind/Execute/Sync in one write)
//   pool+Upsert     the same through pg-pool (pool.query)
//   SessionStore    store.save(): validation, retry loop, metrics (what tsm bench runs), and
//                   the same with `metrics: false`
//   raw socket      the floor for Node: the prepared Bind/Execute/Sync bytes written straight to
//                   the socket and a scan for ReadyForQuery, no pg on the hot path
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
const pg = (await import(join(root, 'node_modules/pg/lib/index.js'))).default;
const { SessionStore } = await import(join(root, 'dist/src/store/store.js'));
const { UpsertCall, bindExecuteSync } = await import(join(root, 'dist/src/store/upsert-call.js'));

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const N = Number(opt('clients', '16'));
const CALLS = Number(opt('calls', '20000'));
const REPEAT = Number(opt('repeat', '3'));

const serverUrl = process.env.TSM_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = 'tsm_bench_client_cpu';
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

const session = Buffer.alloc(600, 7).toString('base64'); // 800 characters
const text = 'SELECT "public".upsert_telegram_session($1::varchar, $2::varchar, $3::text, $4::varchar, $5::varchar, $6::text, $7::text) AS id';
const values = () => ['tsm-bench', 'tsm-bench:cpu:' + Math.floor(Math.random() * 10000), session, 'k', 'authorized', null, null];

const clients = [];
for (let i = 0; i < N; i++) {
  const c = new pg.Client(url);
  await c.connect();
  clients.push(c);
}
const pool = new pg.Pool({ connectionString: url, max: N, idleTimeoutMillis: 0 });
pool.on('error', () => {});
const store = new SessionStore({ pool });
const bare = new SessionStore({ pool, metrics: false });
// The raw-socket floor needs connections of its own (their 'data' listeners are taken over).
const raw = [];
for (let i = 0; i < N; i++) {
  const c = new pg.Client(url);
  c.on('error', () => {}); // its socket is destroyed at the end, behind pg's back
  await c.connect();
  await c.query({ name: 'x', text, values: values() });
  const s = c.connection.stream;
  s.removeAllListeners('data');
  raw.push(s);
}
const rawCall = (s) =>
  new Promise((resolve) => {
    const onData = (d) => {
      if (d[d.length - 6] === 0x5a) {
        s.removeListener('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
    s.write(bindExecuteSync('x', values()));
  });

async function save(s) {
  const v = values();
  const r = await s.save({ tenantId: v[0], userId: v[1], sessionStringEnc: v[2], keyId: v[3], status: v[4] });
  if (!r.ok) throw new Error(r.details);
}

const paths = {
  'pg Query': (i) => clients[i].query({ name: 'q', text, values: values() }),
  UpsertCall: (i) => new Promise((res, rej) => clients[i].query(new UpsertCall('u', text, values()), (e) => (e ? rej(e) : res()))),
  'pool+Upsert': () => new Promise((res, rej) => pool.query(new UpsertCall('p', text, values()), (e) => (e ? rej(e) : res()))),
  'SessionStore, metrics off': () => save(bare),
  SessionStore: () => save(store),
  'raw socket': (i) => rawCall(raw[i]),
};

async function drive(call, total) {
  let left = total;
  await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      while (left-- > 0) await call(i);
    }),
  );
}

const results = {};
for (let rep = 0; rep < REPEAT; rep++) {
  for (const [name, call] of Object.entries(paths)) {
    await drive(call, 2000); // warm-up (and prepare on every connection)
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await drive(call, CALLS);
    const cpu = process.cpuUsage(c0);
    const ms = performance.now() - t0;
    (results[name] ??= []).push({ us: (cpu.user + cpu.system) / CALLS, user: cpu.user / CALLS, tps: (CALLS / ms) * 1000 });
  }
}
await Promise.all([...clients.map((c) => c.end()), store.close(), bare.close()]);
await pool.end();
for (const s of raw) s.destroy();
await admin(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`\n${N} connections, ${CALLS} calls per measurement, median of ${REPEAT}\n`);
console.log('| client path | CPU µs per call (user + system) | of which user | calls/s |');
console.log('|---|---|---|---|');
for (const [name, rs] of Object.entries(results)) {
  console.log(`| ${name} | ${median(rs.map((r) => r.us)).toFixed(1)} | ${median(rs.map((r) => r.user)).toFixed(1)} | ${median(rs.map((r) => r.tps)).toFixed(0)} |`);
}
process.exit(0);
