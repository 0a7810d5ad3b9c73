/** `tsm test-write`: its flags, help texts and defaults, the only place they are written (--help, the parser and tsm demo read them). */
import { VIAS } from '../../../store/via.js';
import type { OptionSpecs } from '../../options.js';
import { fleetOptions } from '../../fleet/flags.js';

export const MAX_CONCURRENCY = 256;
export const MAX_ROUNDS = 100_000;

export const TEST_WRITE_OPTIONS = {
  lengths: { flags: '--lengths <list>', description: 'comma-separated session lengths (1 … 10,000,000)', default: '68,268,800' },
  concurrency: { flags: '--concurrency <n>', description: `connections racing on one user id (1 … ${MAX_CONCURRENCY})`, default: '8' },
  rounds: { flags: '--rounds <n>', description: 'race rounds', default: '20' },
  via: { flags: '--via <path>', description: 'write through the function or the INSERT … ON CONFLICT statement', default: 'function', choices: VIAS },
  keep: { flags: '--keep', description: 'keep the test rows' },
  prepare: { flags: '--no-prepare', description: 'unnamed statements only (a transaction-mode pooler; tsm also switches by itself on the first conflict)' },
  metricsFile: { flags: '--metrics-file <file>', description: 'write Prometheus metrics (textfile-collector format)' },
  ...fleetOptions('continue'),
} as const satisfies OptionSpecs;
