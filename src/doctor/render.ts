/** The human report: a table of check / status / detail, the remedy of every problem, a summary line. */
import type { ChalkInstance } from 'chalk';
import { paintStatus } from '../report/style.js';
import { renderTable } from '../report/table.js';
import type { DoctorReport, Summary } from './types.js';

export function summaryLine(s: Summary): string {
  return `${s.ok} ok, ${s.warn} warning, ${s.fail} failing, ${s.skipped} skipped`;
}

function indent(text: string, by: string): string {
  return text
    .split('\n')
    .map((l) => by + l)
    .join('\n');
}

export function renderReport(report: DoctorReport, style: ChalkInstance, width = process.stdout.columns ?? 100): string {
  const total = Math.max(80, Math.min(width, 160));
  const widths = [24, 9, total - 24 - 9 - 4];
  const version = report.server_version ? `PostgreSQL ${report.server_version.split(' ')[0]}` : 'PostgreSQL ?';
  const out: string[] = [];
  out.push(style.bold('tsm doctor') + `  ${report.database}  ·  ${version}  ·  schema ${report.schema}`);
  out.push(
    renderTable(
      ['check', 'status', 'detail'],
      report.checks.map((c) => [c.id, paintStatus(style, c.status), c.detail]),
      widths,
      { compact: true },
    ),
  );
  const problems = report.checks.filter((c) => c.remedy !== null);
  if (problems.length > 0) {
    out.push('');
    out.push(style.bold('Remedies'));
    const shown = new Map<string, string>();
    for (const c of problems) {
      out.push('');
      out.push(`${paintStatus(style, c.status)}  ${style.bold(c.id)}: ${c.title}`);
      const same = shown.get(c.remedy ?? '');
      out.push(same ? `      the same remedy as ${same}` : indent(c.remedy ?? '', '      '));
      if (!same) shown.set(c.remedy ?? '', c.id);
    }
  }
  out.push('');
  const s = report.summary;
  const line = summaryLine(s);
  out.push(s.fail > 0 ? style.red(line) : s.warn > 0 ? style.yellow(line) : style.green(line));
  return out.join('\n');
}
