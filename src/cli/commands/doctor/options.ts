/** `tsm doctor`: its options, their defaults (the only place they are written) and their parser. */
import type { DoctorEnv } from '../../../doctor/types.js';
import { parseChoice, parseIntStrict } from '../../../parse.js';
import { optionValue, type CommandArgs, type OptionSpecs } from '../../options.js';

/** PostgreSQL's largest varchar(n). */
export const MAX_VARCHAR = 10_485_760;
export const FAIL_ON = ['fail', 'warn'] as const;
export type FailOn = (typeof FAIL_ON)[number];

export const DOCTOR_OPTIONS = {
  explain: { flags: '--explain <check-id>', description: 'what a check looks at, why it matters, and its SQL' },
  minSessionLength: { flags: '--min-session-length <n>', description: 'smallest acceptable varchar(n) for session columns', default: '4096' },
  failOn: { flags: '--fail-on <level>', description: 'exit 1 on failures only, or on warnings too', default: 'fail', choices: FAIL_ON },
} as const satisfies OptionSpecs;

export interface DoctorOptions {
  /** `--explain <id>`: explain that check instead of running doctor (no database needed). */
  explain: string | undefined;
  minSessionLength: number;
  failOn: FailOn;
}

export function parseDoctorOptions(args: CommandArgs): DoctorOptions {
  const o = args.options;
  const explain = optionValue(DOCTOR_OPTIONS, o, 'explain');
  return {
    explain: explain === undefined ? undefined : String(explain),
    minSessionLength: parseIntStrict('--min-session-length', optionValue(DOCTOR_OPTIONS, o, 'minSessionLength'), 1, MAX_VARCHAR),
    failOn: parseChoice('--fail-on', optionValue(DOCTOR_OPTIONS, o, 'failOn'), FAIL_ON),
  };
}

/** What every check is run against, from the options and the schema. */
export function doctorEnv(schema: string, o: DoctorOptions): DoctorEnv {
  return { schema, minSessionLength: o.minSessionLength };
}
