/** `tsm doctor`: its typed options, parsed from the command line (defaults: flags.ts). */
import type { DoctorEnv } from '../../../doctor/types.js';
import { parseChoice, parseIntStrict } from '../../../parse.js';
import { optionValue, type CommandArgs } from '../../options.js';
import { DOCTOR_OPTIONS, FAIL_ON, MAX_VARCHAR, type FailOn } from './flags.js';

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
