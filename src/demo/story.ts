/**
 * The demo's story: which commands run, in which order, with which options (the defaults of
 * src/cli.ts, spelled out because run() is called directly), and what each is expected to do.
 * A step is `ok` when it behaved as expected: the first doctor is expected to be red.
 */
import type { CommandArgs } from '../cli.js';
import { makeContext, type CommandResult, type Context } from '../context.js';
import { EXIT, TsmError } from '../errors.js';

type Loader = () => Promise<{ run(ctx: Context, args: CommandArgs): Promise<CommandResult> }>;

export interface StepSpec {
  /** The command as typed after `tsm`. */
  name: string;
  /** What the step shows, for the heading. */
  purpose: string;
  expectedExitCode: number;
  load: Loader;
  positional: (string | undefined)[];
  options: Record<string, unknown>;
  /** Extra expectation on the result beyond the exit code (e.g. doctor red has failing checks). */
  expect?(data: unknown): string | null;
}

const doctorOptions = { minSessionLength: '4096', failOn: 'fail' };

function failingChecks(data: unknown): string[] {
  const checks = (data as { checks?: { id?: string; status?: string }[] } | null)?.checks;
  return Array.isArray(checks) ? checks.filter((c) => c.status === 'fail').map((c) => String(c.id)) : [];
}

export const STORY: readonly StepSpec[] = [
  {
    name: 'doctor',
    purpose: "diagnose the incident's schema: expected red, each problem with its remedy",
    expectedExitCode: EXIT.failed,
    load: () => import('../commands/doctor.js'),
    positional: [],
    options: doctorOptions,
    expect: (data) => (failingChecks(data).length > 0 ? null : 'no failing check reported'),
  },
  {
    name: 'dedupe',
    purpose: 'move the duplicate rows that block the unique index into the archive',
    expectedExitCode: EXIT.ok,
    load: () => import('../commands/dedupe.js'),
    positional: [],
    options: { keep: 'newest', batchSize: '500' },
  },
  {
    name: 'migrate up',
    purpose: 'apply the versioned migrations: columns, unique index (CONCURRENTLY), upsert function',
    expectedExitCode: EXIT.ok,
    load: () => import('../commands/migrate-up.js'),
    positional: [undefined],
    options: { lockTimeout: '5s', lockWait: '60s' },
  },
  {
    name: 'doctor',
    purpose: 'diagnose again: expected green',
    expectedExitCode: EXIT.ok,
    load: () => import('../commands/doctor.js'),
    positional: [],
    options: doctorOptions,
  },
  {
    name: 'test-write',
    purpose: 'save sessions of 68, 268 and 800 characters, then race 8 connections on one user id',
    expectedExitCode: EXIT.ok,
    load: () => import('../commands/test-write.js'),
    positional: [],
    options: { lengths: '68,268,800', concurrency: '8', rounds: '20', via: 'function' },
  },
];

export interface StepOutcome {
  name: string;
  ok: boolean;
  exit_code: number;
  expected_exit_code: number;
  /** What did not go as expected (null when ok). */
  problem: string | null;
  /** The command's JSON document (`{ error }` when it stopped with an error). */
  result: unknown;
  render: CommandResult['render'];
}

export interface StepSettings {
  url: string;
  schema: string;
  json: boolean;
  color: boolean;
  /** Where the step's progress/log lines go. */
  log(line: string): void;
}

/** Runs one step in-process with its own Context, as the CLI would; never throws. */
export async function runStep(spec: StepSpec, s: StepSettings): Promise<StepOutcome> {
  const globals = { databaseUrl: s.url, schema: s.schema, json: s.json, color: s.color, connectTimeout: '10' };
  const ctx: Context = { ...makeContext(globals), log: s.log };
  let exitCode: number;
  let result: unknown;
  let render: CommandResult['render'];
  try {
    const mod = await spec.load();
    const r = await mod.run(ctx, { positional: spec.positional, options: { ...globals, ...spec.options } });
    exitCode = r.exitCode;
    result = r.data;
    render = (style) => r.render(style);
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
    exitCode = err instanceof TsmError ? err.exitCode : EXIT.failed;
    result = { error: message };
    render = () => `tsm: ${message}`;
  }
  let problem: string | null = null;
  if (exitCode !== spec.expectedExitCode) {
    problem = `exited ${exitCode}, expected ${spec.expectedExitCode}`;
  } else if (spec.expect) {
    problem = spec.expect(result);
  }
  return { name: spec.name, ok: problem === null, exit_code: exitCode, expected_exit_code: spec.expectedExitCode, problem, result, render };
}
