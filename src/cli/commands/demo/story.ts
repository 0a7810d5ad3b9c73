/**
 * The demo's story: which commands run, in which order, and what each is expected to do. Each
 * step runs the command's own run() with no options of its own, so every option takes the default
 * declared in that command's options.ts (the same table --help shows).
 * A step is `ok` when it behaved as expected: the first doctor is expected to be red.
 */
import { EXIT, TsmError } from '../../../errors.js';
import { errorDocument, resultDocument } from '../../error-document.js';
import type { Cleanups } from '../../cleanup.js';
import { makeContext, type CommandResult, type Context } from '../../context.js';
import { defaultOf, type CommandArgs, type RawOptions } from '../../options.js';
import { TEST_WRITE_OPTIONS } from '../test-write/flags.js';

type Loader = () => Promise<{ run(ctx: Context, args: CommandArgs): Promise<CommandResult> }>;

export interface StepSpec {
  /** The command as typed after `tsm`. */
  name: string;
  /** What the step shows, for the heading. */
  purpose: string;
  expectedExitCode: number;
  load: Loader;
  positional: (string | undefined)[];
  /** Options beyond the defaults (none today: the demo shows what the defaults do). */
  options: RawOptions;
  /** Extra expectation on the result beyond the exit code (e.g. doctor red has failing checks). */
  expect?(data: unknown): string | null;
}

const lengths = defaultOf(TEST_WRITE_OPTIONS, 'lengths').split(',');
const writeStory =
  `save sessions of ${lengths.slice(0, -1).join(', ')} and ${lengths[lengths.length - 1]} characters, ` +
  `then race ${defaultOf(TEST_WRITE_OPTIONS, 'concurrency')} connections on one user id`;

function failingChecks(data: unknown): string[] {
  const checks = (data as { checks?: { id?: string; status?: string }[] } | null)?.checks;
  return Array.isArray(checks) ? checks.filter((c) => c.status === 'fail').map((c) => String(c.id)) : [];
}

export const STORY: readonly StepSpec[] = [
  {
    name: 'doctor',
    purpose: "diagnose the incident's schema: expected red, each problem with its remedy",
    expectedExitCode: EXIT.failed,
    load: () => import('../doctor/run.js'),
    positional: [],
    options: {},
    expect: (data) => (failingChecks(data).length > 0 ? null : 'no failing check reported'),
  },
  {
    name: 'dedupe',
    purpose: 'move the duplicate rows that block the unique index into the archive',
    expectedExitCode: EXIT.ok,
    load: () => import('../dedupe/run.js'),
    positional: [],
    options: {},
  },
  {
    name: 'migrate up',
    purpose: 'apply the versioned migrations: columns, unique index (CONCURRENTLY), upsert function',
    expectedExitCode: EXIT.ok,
    load: () => import('../migrate/up.js'),
    positional: [undefined],
    options: {},
  },
  {
    name: 'doctor',
    purpose: 'diagnose again: expected green',
    expectedExitCode: EXIT.ok,
    load: () => import('../doctor/run.js'),
    positional: [],
    options: {},
  },
  {
    name: 'test-write',
    purpose: writeStory,
    expectedExitCode: EXIT.ok,
    load: () => import('../test-write/run.js'),
    positional: [],
    options: {},
  },
];

export interface StepOutcome {
  name: string;
  ok: boolean;
  exit_code: number;
  expected_exit_code: number;
  /** What did not go as expected (null when ok). */
  problem: string | null;
  /** The command's --json document: its result with `ok`, or `{ ok: false, error: { code, message } }` when it stopped with an error. */
  result: unknown;
  render: CommandResult['render'];
}

export interface StepSettings {
  url: string;
  schema: string;
  json: boolean;
  color: boolean;
  /** The demo's cleanup stack: a step registers its own cleanups on it (Ctrl-C runs them first). */
  cleanups: Cleanups;
  /** Where the step's progress/log lines go. */
  log(line: string): void;
}

/** Runs one step in-process with its own Context, as the CLI would; never throws. */
export async function runStep(spec: StepSpec, s: StepSettings): Promise<StepOutcome> {
  const globals = { databaseUrl: s.url, schema: s.schema, json: s.json, color: s.color };
  const ctx = makeContext(globals, { cleanups: s.cleanups, log: s.log });
  let exitCode: number;
  let result: unknown;
  let render: CommandResult['render'];
  try {
    const mod = await spec.load();
    const r = await mod.run(ctx, { positional: spec.positional, options: { ...globals, ...spec.options } });
    exitCode = r.exitCode;
    result = resultDocument(r.data, r.exitCode);
    render = (style) => r.render(style);
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
    exitCode = err instanceof TsmError ? err.exitCode : EXIT.failed;
    result = errorDocument(err, { command: spec.name });
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
