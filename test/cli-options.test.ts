/**
 * Each command's options are declared once (its flags.ts): commander's help, the command's parser
 * (options.ts) and `tsm demo` read that table. And --connect-timeout reaches the connection
 * resolver only when it was given on the command line. No database needed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { BENCH_OPTIONS } from '../src/cli/commands/bench/flags.js';
import { DEDUPE_OPTIONS } from '../src/cli/commands/dedupe/flags.js';
import { parseDedupeOptions } from '../src/cli/commands/dedupe/options.js';
import { DEMO_OPTIONS } from '../src/cli/commands/demo/flags.js';
import { STORY } from '../src/cli/commands/demo/story.js';
import { DOCTOR_OPTIONS } from '../src/cli/commands/doctor/flags.js';
import { parseDoctorOptions } from '../src/cli/commands/doctor/options.js';
import { CREATE_OPTIONS, DOWN_OPTIONS, STATUS_OPTIONS, UP_OPTIONS } from '../src/cli/commands/migrate/flags.js';
import { migrateOptions } from '../src/cli/commands/migrate/options.js';
import { TEST_WRITE_OPTIONS } from '../src/cli/commands/test-write/flags.js';
import { parseTestWriteOptions } from '../src/cli/commands/test-write/options.js';
import { globalOptions } from '../src/cli/main.js';
import { GLOBAL_OPTIONS, type OptionSpecs } from '../src/cli/options.js';
import { buildProgram } from '../src/cli/program.js';

/** Parses argv with the real program; returns the command commander chose (nothing is run). */
async function parsed(argv: string[]): Promise<Command> {
  let chosen: Command | undefined;
  const program = buildProgram(async (_load, _positional, cmd) => {
    chosen = cmd;
  });
  await program.parseAsync(['node', 'tsm', ...argv]);
  assert.ok(chosen, `no command ran for ${argv.join(' ')}`);
  return chosen;
}

function find(path: string[]): Command {
  let cmd: Command = buildProgram(async () => {});
  for (const name of path) {
    const next = cmd.commands.find((c) => c.name() === name);
    assert.ok(next, `no command ${path.join(' ')}`);
    cmd = next;
  }
  return cmd;
}

const TABLES: [string[], OptionSpecs][] = [
  [[], GLOBAL_OPTIONS],
  [['doctor'], DOCTOR_OPTIONS],
  [['migrate', 'up'], UP_OPTIONS],
  [['migrate', 'down'], DOWN_OPTIONS],
  [['migrate', 'status'], STATUS_OPTIONS],
  [['migrate', 'create'], CREATE_OPTIONS],
  [['test-write'], TEST_WRITE_OPTIONS],
  [['dedupe'], DEDUPE_OPTIONS],
  [['bench'], BENCH_OPTIONS],
  [['demo'], DEMO_OPTIONS],
];

describe('options: one table per command', () => {
  for (const [path, table] of TABLES) {
    it(`tsm ${path.join(' ') || '(global)'}: commander declares exactly the table's flags, defaults and choices`, () => {
      const cmd = find(path);
      const declared = cmd.options
        .filter((o) => !['-V, --version'].includes(o.flags))
        .map((o) => ({ key: o.attributeName(), flags: o.flags, default: o.defaultValue as unknown, choices: o.argChoices ?? null }));
      const expected = Object.entries(table).map(([key, spec]) => ({
        key,
        flags: spec.flags,
        default: spec.default,
        choices: spec.choices ? [...spec.choices] : null,
      }));
      assert.deepEqual(declared, expected);
    });
  }

  it('the parsers apply the same defaults when an option is absent (how tsm demo runs each step)', () => {
    const none = { positional: [], options: {} };
    assert.deepEqual(parseDoctorOptions(none), {
      explain: undefined,
      minSessionLength: 4096,
      failOn: 'fail',
      dataMode: 'budget',
      dataTimeoutMs: 10_000,
      metricsPath: undefined,
    });
    assert.deepEqual(parseDedupeOptions(none), { keep: 'newest', batchSize: undefined, batchTimeMs: 50, lockTimeoutMs: 5000, dryRun: false });
    assert.deepEqual(parseTestWriteOptions(none), { lengths: [68, 268, 800], concurrency: 8, rounds: 20, via: 'function', keep: false, prepare: true, metricsPath: undefined });
    const m = migrateOptions({ positional: [undefined], options: {} });
    assert.deepEqual([m.lockTimeoutMs, m.lockRetries, m.lockWaitMs, m.count], [500, 12, 60_000, undefined]);
    for (const step of STORY) assert.deepEqual(step.options, {}, `demo step ${step.name} runs with the defaults`);
    assert.match(STORY.find((s) => s.name === 'test-write')!.purpose, /68, 268 and 800 characters, then race 8 connections/);
  });

  it('--connect-timeout is passed on only when given on the command line', async () => {
    assert.equal(globalOptions(await parsed(['doctor', '-d', 'postgres://x@h/db'])).connectTimeout, undefined);
    assert.equal(globalOptions(await parsed(['doctor', '--connect-timeout', '3'])).connectTimeout, '3');
    assert.equal(globalOptions(await parsed(['--connect-timeout', '10', 'migrate', 'status'])).connectTimeout, '10', 'given, even when equal to the default');
    const g = globalOptions(await parsed(['--json', '--no-color', '--schema', 'tg', 'dedupe']));
    assert.deepEqual(g, { databaseUrl: undefined, schema: 'tg', json: true, color: false, connectTimeout: undefined });
  });
});
