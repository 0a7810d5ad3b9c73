/**
 * The fleet flags (design, "Fleet") that `doctor`, `migrate status`, `migrate up` and `test-write`
 * share: the only place they are written. Imports nothing at run time (program.ts loads it for --help).
 */
import type { OptionSpecs } from '../options.js';

export const MAX_PARALLEL = 256;
export const MAX_BUDGET = 10_000;
export const FLEET_ON_ERROR = ['stop', 'continue'] as const;

/** The fleet flags of one command; `onError` is its default for --on-error. */
export function fleetOptions(onError: (typeof FLEET_ON_ERROR)[number]) {
  return {
    targets: { flags: '--targets <file>', description: 'run over every database listed in FILE (one a line: [name] url; - reads stdin)' },
    targetsLike: { flags: '--targets-like <pattern>', description: 'run over every database on the -d server whose name matches the SQL LIKE pattern' },
    parallel: { flags: '--parallel <n>', description: `with --targets: targets at a time (1 … ${MAX_PARALLEL})`, default: '4' },
    canary: { flags: '--canary <n>', description: 'with --targets: the first N targets run first; if one is not ok, nothing else starts', default: '0' },
    onError: {
      flags: '--on-error <mode>',
      description: 'with --targets: stop (no new target starts after one that is not ok) or continue',
      default: onError,
      choices: FLEET_ON_ERROR,
    },
    connectionBudget: {
      flags: '--connection-budget <n>',
      description: "with --targets: most connections tsm holds at once per server (default: half of the server's free connections, at most 64)",
    },
  } as const satisfies OptionSpecs;
}

/** The option keys above: a run with one of the first two is a fleet run. */
export const FLEET_KEYS = ['targets', 'targetsLike', 'parallel', 'canary', 'onError', 'connectionBudget'] as const;
