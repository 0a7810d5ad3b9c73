/** `tsm bench`: its flags, help texts and defaults, the only place they are written (--help and the parser read them). */
import { VIAS } from '../../../store/via.js';
import type { OptionSpecs } from '../../options.js';

export const BENCH_OPTIONS = {
  clients: { flags: '--clients <n>', description: 'concurrent clients', default: '4' },
  duration: { flags: '--duration <seconds>', description: 'how long to run', default: '10' },
  warmup: { flags: '--warmup <duration>', description: 'untimed calls before the clock starts (0: none)', default: '1s' },
  users: { flags: '--users <n>', description: 'distinct user ids to spread upserts over', default: '10000' },
  length: { flags: '--length <n>', description: 'session string length', default: '800' },
  via: { flags: '--via <path>', description: 'function or statement', default: 'function', choices: VIAS },
  prepare: { flags: '--no-prepare', description: 'unnamed statements only (a transaction-mode pooler; tsm also switches by itself on the first conflict)' },
} as const satisfies OptionSpecs;
