/** `tsm doctor`: its flags, help texts and defaults, the only place they are written (--help, the parser and tsm demo read them). */
import type { OptionSpecs } from '../../options.js';
import { fleetOptions } from '../../fleet/flags.js';

/** PostgreSQL's largest varchar(n). */
export const MAX_VARCHAR = 10_485_760;
export const FAIL_ON = ['fail', 'warn'] as const;
export type FailOn = (typeof FAIL_ON)[number];

export const DOCTOR_OPTIONS = {
  explain: { flags: '--explain <check-id>', description: 'what a check looks at, why it matters, and its SQL' },
  minSessionLength: { flags: '--min-session-length <n>', description: 'smallest acceptable varchar(n) for session columns', default: '4096' },
  failOn: { flags: '--fail-on <level>', description: 'exit 1 on failures only, or on warnings too', default: 'fail', choices: FAIL_ON },
  ...fleetOptions('continue'),
} as const satisfies OptionSpecs;
