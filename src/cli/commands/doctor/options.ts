/** `tsm doctor`: its typed options, parsed from the command line (defaults: flags.ts). */
import { DEFAULT_DATA_BUDGET, type DataMode, type DoctorEnv } from '../../../doctor/types.js';
import { UsageError } from '../../../errors.js';
import { parseChoice, parseDuration, parseIntStrict } from '../../../parse.js';
import { checkWritableTarget } from '../../atomic-file.js';
import { flag, optionValue, type CommandArgs } from '../../options.js';
import { DOCTOR_OPTIONS, FAIL_ON, MAX_VARCHAR, type FailOn } from './flags.js';

export interface DoctorOptions {
  /** `--explain <id>`: explain that check instead of running doctor (no database needed). */
  explain: string | undefined;
  minSessionLength: number;
  failOn: FailOn;
  dataMode: DataMode;
  /** Milliseconds; 0 = no limit. */
  dataTimeoutMs: number;
  /** `--metrics-file`: checked up front (exit 2 before connecting). */
  metricsPath: string | undefined;
}

export function parseDoctorOptions(args: CommandArgs): DoctorOptions {
  const o = args.options;
  const explain = optionValue(DOCTOR_OPTIONS, o, 'explain');
  const exact = flag(o, 'exact');
  const estimate = flag(o, 'estimate');
  if (exact && estimate) throw new UsageError('--exact and --estimate exclude each other');
  const rawTimeout = String(optionValue(DOCTOR_OPTIONS, o, 'dataTimeout')).trim();
  const metricsFile = optionValue(DOCTOR_OPTIONS, o, 'metricsFile');
  if (explain !== undefined && metricsFile !== undefined) throw new UsageError('--metrics-file: --explain runs no checks, so there is nothing to write');
  return {
    explain: explain === undefined ? undefined : String(explain),
    minSessionLength: parseIntStrict('--min-session-length', optionValue(DOCTOR_OPTIONS, o, 'minSessionLength'), 1, MAX_VARCHAR),
    failOn: parseChoice('--fail-on', optionValue(DOCTOR_OPTIONS, o, 'failOn'), FAIL_ON),
    dataMode: exact ? 'exact' : estimate ? 'estimate' : 'budget',
    dataTimeoutMs: /^0+(ms|s|m|min)?$/.test(rawTimeout) ? 0 : parseDuration('--data-timeout', rawTimeout),
    metricsPath: typeof metricsFile === 'string' ? checkWritableTarget('--metrics-file', metricsFile) : undefined,
  };
}

/** What every check is run against, from the options and the schema. */
export function doctorEnv(schema: string, o: DoctorOptions): DoctorEnv {
  return {
    schema,
    minSessionLength: o.minSessionLength,
    data: { mode: o.dataMode, maxExactRows: DEFAULT_DATA_BUDGET.maxExactRows, timeoutMs: o.dataTimeoutMs },
  };
}
