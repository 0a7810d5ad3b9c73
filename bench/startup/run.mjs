#!/usr/bin/env node
// bench/startup: how much tsm adds to a bare Node start.
//
//   npm ci && node bench/startup/run.mjs [--runs N]
//
// Times `node -e 0` (the baseline), `tsm --version` and `tsm doctor --help`, with hyperfine when it
// is installed (apt-get install hyperfine), else a loop of N spawns; prints medians, ratios and deltas.
// Target: tsm adds under 80 ms (commander is the only module loaded before a command runs).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 40;
const tsm = join(root, 'bin/tsm.js');
if (!existsSync(join(root, 'dist/src/cli/main.js'))) {
  process.stderr.write('bench/startup: build first (npm ci, or npx tsc -p tsconfig.json)\n');
  process.exit(2);
}

const commands = [
  { name: 'node -e 0', argv: [process.execPath, '-e', '0'] },
  { name: 'tsm --version', argv: [process.execPath, tsm, '--version'] },
  { name: 'tsm doctor --help', argv: [process.execPath, tsm, 'doctor', '--help'] },
];

function hyperfine() {
  const out = join(mkdtempSync(join(tmpdir(), 'tsm-bench-')), 'h.json');
  const r = spawnSync('hyperfine', ['-N', '--warmup', '5', '--runs', String(runs), '--export-json', out, ...commands.map((c) => c.argv.join(' '))], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error('hyperfine failed');
  return JSON.parse(readFileSync(out, 'utf8')).results.map((x, i) => ({ name: commands[i].name, median: x.median * 1000 }));
}

function loop() {
  return commands.map(({ name, argv }) => {
    const times = [];
    for (let i = 0; i < runs + 5; i++) {
      const t0 = performance.now();
      const r = spawnSync(argv[0], argv.slice(1), { stdio: 'ignore' });
      if (r.status !== 0) throw new Error(`${name} exited ${r.status}`);
      if (i >= 5) times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { name, median: times[Math.floor(times.length / 2)] };
  });
}

const haveHyperfine = spawnSync('hyperfine', ['--version']).status === 0;
process.stderr.write(haveHyperfine ? `hyperfine -N, ${runs} runs after 5 warmups\n` : `hyperfine not installed: ${runs} spawns after 5 warmups\n`);
const results = haveHyperfine ? hyperfine() : loop();
const base = results[0].median;
console.log(`\n| command | median | vs node -e 0 |`);
console.log(`|---|---|---|`);
for (const r of results) {
  const d = r.median - base;
  console.log(`| ${r.name} | ${r.median.toFixed(1)} ms | ${(r.median / base).toFixed(2)}× (${d >= 0 ? '+' : ''}${d.toFixed(1)} ms) |`);
}
const worst = Math.max(...results.slice(1).map((r) => r.median - base));
console.log(`\ntsm adds at most ${worst.toFixed(1)} ms (target: under 80 ms) → ${worst < 80 ? 'met' : 'NOT met'}`);
