/** Human output of `tsm test-write`: a row per length, the race line, problems with remedies, the verdict. */
import type { ChalkInstance } from 'chalk';
import { paintStatus } from '../../../report/style.js';
import { renderTable } from '../../../report/table.js';
import type { StepStatus } from './lengths.js';
import { remedyFor, timeoutNote } from '../../remedy.js';
import type { TestWriteReport } from './engine.js';

const step = (style: ChalkInstance, s: StepStatus): string =>
  s === 'ok' ? paintStatus(style, 'ok') : s === 'fail' ? paintStatus(style, 'fail') : paintStatus(style, 'skipped');

const plural = (n: number, one: string, many = one + 's'): string => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

/** Each failing code once, with what happened (first occurrence) and its SQLSTATE. */
export function problemsOf(r: TestWriteReport): Map<string, { what: string; sqlstate: string | null }> {
  const problems = new Map<string, { what: string; sqlstate: string | null }>();
  const timeout = (code: string, sqlstate: string | null): string => timeoutNote(code, sqlstate, r.server_timeouts);
  for (const x of r.results) {
    if (x.code && !problems.has(x.code)) {
      const sqlstate = x.sqlstate ?? null;
      problems.set(x.code, { what: `length ${x.length}: ${sqlstate ? `${sqlstate}: ` : ''}${x.detail ?? ''}${timeout(x.code, sqlstate)}`, sqlstate });
    }
  }
  for (const code of Object.keys(r.race.errors)) {
    const d = r.race_details[code];
    const sqlstate = d?.sqlstate ?? null;
    if (!problems.has(code)) problems.set(code, { what: `race: ${sqlstate ? `${sqlstate}: ` : ''}${d?.message ?? ''}${timeout(code, sqlstate)}`, sqlstate });
  }
  if (r.race.rows_left > 1 && !problems.has('duplicate_rows')) {
    problems.set('duplicate_rows', { what: `race: a user id ended with ${r.race.rows_left} rows`, sqlstate: null });
  }
  return problems;
}

export function renderTestWrite(r: TestWriteReport, style: ChalkInstance): string {
  const unnamed = r.prepared_statements ? '' : ', unnamed statements';
  const out: string[] = [style.bold(`tsm test-write: ${r.database}, schema ${r.schema}, via ${r.via}${unnamed}`), ''];
  out.push(
    renderTable(
      ['length', 'insert', 'update', 'read-back', 'time', 'error'],
      r.results.map((x) => [
        x.length.toLocaleString('en-US'),
        step(style, x.insert),
        step(style, x.update),
        step(style, x.readback),
        `${x.ms} ms`,
        x.code ? style.red(x.code + (x.sqlstate ? ` (${x.sqlstate})` : '')) : '',
      ]),
      undefined,
      { compact: true },
    ),
  );

  const race = r.race;
  const errs = Object.entries(race.errors);
  const errText = errs.length === 0 ? '0 errors' : errs.map(([code, n]) => `${style.red(code)} × ${n}`).join(', ');
  out.push(
    '',
    `race: ${plural(race.concurrency, 'connection')} × ${plural(race.rounds, 'round')} (insert race, then update race, on one user id each): ` +
      `${plural(race.calls, 'call')}, ${errText}, rows left ${race.rows_left} → ${paintStatus(style, race.ok ? 'ok' : 'fail')}`,
  );

  // Each problem once: what happened, and what to do about it.
  const problems = problemsOf(r);
  if (problems.size > 0) {
    out.push('');
    for (const [code, p] of problems) {
      out.push(`${style.red(code)}: ${p.what}`, `  remedy: ${remedyFor(code, r.schema, p.sqlstate, r.server_timeouts)}`);
    }
  }

  out.push('');
  const rows = r.rows;
  if (rows.kept) {
    out.push(`kept the test rows: tenant ${rows.tenant}, user ids ${rows.prefix}1 … ${rows.prefix}${rows.created_ids}; remove them with:`, `  ${rows.delete_sql}`);
  } else if (rows.cleanup_error) {
    out.push(`${paintStatus(style, 'fail')}: could not remove the test rows (${rows.cleanup_error}); remove them with:`, `  ${rows.delete_sql}`);
  } else {
    out.push(`test rows removed (${plural(rows.removed ?? 0, 'row')}, tenant ${rows.tenant})`);
  }
  const failedLengths = r.results.filter((x) => !x.ok).length;
  if (r.ok) {
    out.push(`${paintStatus(style, 'ok')}: every session was saved, updated and read back intact, and the race left one row per user`);
  } else {
    const parts: string[] = [];
    if (failedLengths > 0) parts.push(`${failedLengths} of ${r.results.length} lengths`);
    if (!race.ok) parts.push('the race');
    if (rows.cleanup_error) parts.push('the cleanup');
    out.push(`${style.red.bold('failing')}: ${parts.join(', ')}`);
  }
  return out.join('\n');
}
