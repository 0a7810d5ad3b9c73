/** The status of a check or a step, as reports show it (no colours here: see style.ts). */
export type Status = 'ok' | 'warn' | 'fail' | 'skipped';
