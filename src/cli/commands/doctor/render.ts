/**
 * Human output of `tsm doctor`: the report (a table of check / status / detail, the remedy of every
 * problem, a summary line) and `--explain`.
 */
import type { ChalkInstance } from 'chalk';
import type { Explanation } from '../../../doctor/explain.js';
import type { DoctorReport, Summary } from '../../../doctor/types.js';
import { paintStatus } from '../../../report/style.js';
import { renderTable } from '../../../report/table.js';

function summaryLine(s: Summary): string {
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
  const inexact = report.checks.filter((c) => !c.exact).map((c) => c.id);
  if (inexact.length > 0) {
    out.push(
      style.dim(
        `not counted exactly: ${inexact.join(', ')} (planner estimates or unknown, to keep doctor cheap on a big table; --exact counts)`,
      ),
    );
  }
  return out.join('\n');
}

/** Wraps prose at `width` columns. */
function wrap(text: string, width: number, indent = '  '): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width - indent.length) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(indent + line);
  return lines.join('\n');
}

export function renderExplanation(e: Explanation, style: ChalkInstance, width = 100): string {
  const w = Math.max(60, Math.min(width, 120));
  const block = (s: string): string =>
    s
      .split('\n')
      .map((l) => '  ' + l)
      .join('\n');
  const params = Object.entries(e.parameters)
    .map(([k, v]) => `${k} is the schema: '${v}'`)
    .join(', ');
  return [
    `${style.bold(e.id)}: ${e.title}`,
    `  not ok: ${e.severity}`,
    '',
    style.bold('What it looks at'),
    wrap(e.looks_at, w),
    '',
    style.bold('Why it matters'),
    wrap(e.why, w),
    '',
    style.bold('SQL') + (params ? `  (${params})` : ''),
    block(e.sql),
    '',
    style.bold('Example'),
    '  bad:',
    block(block(e.example.bad)),
    '  good:',
    block(block(e.example.good)),
    '',
    style.bold('Remedy when not ok'),
    block(e.remedy),
  ].join('\n');
}
