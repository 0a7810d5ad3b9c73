/** Human rendering of a dedupe report (the JSON document is the report itself). */
import type { ChalkInstance } from 'chalk';
import Table from 'cli-table3';
import type { DedupeReport } from '../../../dedupe/engine.js';
import { shownIdent } from '../../../report/names.js';
import { tsmCommand } from '../../../report/shell.js';
import { paintStatus } from '../../../report/style.js';

/** How many user_ids the human output lists (--json lists all). */
const SHOWN = 10;

const n = (x: number): string => x.toLocaleString('en-US');
const plural = (x: number, one: string, many = one + 's'): string => `${n(x)} ${x === 1 ? one : many}`;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** A table without lines between rows (the lists can be long). */
function renderTable(head: string[], rows: (string | number)[][]): string {
  const t = new Table({
    head,
    style: { head: [], border: [] },
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
  });
  for (const row of rows) t.push(row.map((c) => String(c)));
  return t.toString();
}

export function renderDedupe(r: DedupeReport, style: ChalkInstance): string {
  const table = `${shownIdent(r.schema)}.${r.table}`;
  const archive = `${shownIdent(r.schema)}.${r.archive}`;
  const lines: string[] = [];
  const policy = r.keep === 'newest' ? 'keeps the newest row per user_id' : 'keeps the oldest row per user_id';

  if (r.dry_run) {
    const plan = r.would_move ?? [];
    lines.push(style.bold(`tsm dedupe --dry-run: ${table} (${policy}); nothing was changed`), '');
    if (plan.length === 0) {
      lines.push(`${paintStatus(style, 'ok')}: no duplicate user_ids (${plural(r.before.rows, 'row')})`);
      return lines.join('\n');
    }
    lines.push(
      `${plural(plan.length, 'user_id')} with duplicates: ${plural(r.before.excess_rows, 'row')} would move to ${archive} ` +
        `(table ${plural(r.before.rows, 'row')}, archive ${plural(r.before.archive_rows, 'row')})`,
      '',
    );
    const rows = plan.slice(0, SHOWN).map((p) => [p.user_id, p.rows, p.kept_id, p.archive_ids.join('\n')]);
    lines.push(renderTable(['user_id', 'rows', 'keeps id', 'moves id(s)'], rows));
    if (plan.length > SHOWN) lines.push(`… and ${plural(plan.length - SHOWN, 'more user_id')} (--json lists all)`);
    lines.push('', `${paintStatus(style, 'fail')}: duplicates remain; \`${tsmCommand(r.schema, 'dedupe')}\` moves them (nothing is deleted)`);
    return lines.join('\n');
  }

  lines.push(style.bold(`tsm dedupe: ${table}${r.partition_key ? ` (partitioned by ${r.partition_key})` : ''} (${policy})`), '');
  const a = r.after!;
  lines.push(
    renderTable(
      ['', 'rows', 'user_ids with duplicates', 'archive rows'],
      [
        ['before', n(r.before.rows), n(r.before.duplicate_users), n(r.before.archive_rows)],
        ['after', n(a.rows), n(a.duplicate_users), n(a.archive_rows)],
      ],
    ),
  );
  if (r.archive_ddl.length > 0) lines.push(`archive table ${archive} ${r.before.archive_rows === 0 && r.archive_ddl[0]!.startsWith('CREATE') ? 'created' : 'updated (new columns)'}`);
  if (r.archived === 0 && r.passes === 0) {
    lines.push('nothing to move: no duplicate user_ids');
  } else {
    lines.push(
      `archived ${plural(r.archived, 'row')} of ${plural(r.moved.length, 'user_id')} into ${archive} ` +
        `(${plural(r.batches, 'batch', 'batches')}, ${plural(r.passes, 'pass', 'passes')}, ${seconds(r.elapsed_ms)}` +
        `${r.skipped_busy > 0 ? `; ${plural(r.skipped_busy, 'row')} changed or busy in the application were left for a later pass` : ''})`,
    );
    if (r.batches > 0) {
      lines.push(
        `row locks held per batch: longest ${n(r.longest_batch_ms)} ms, median ${n(r.median_batch_ms)} ms ` +
          `(${r.batch_size === null ? `batches sized to ${n(r.batch_target_ms)} ms` : `${plural(r.batch_size, 'row')} per batch`}` +
          `${r.batches_retried > 0 ? `; ${plural(r.batches_retried, 'batch', 'batches')} redone skipping rows the application held` : ''})`,
      );
    }
  }
  if (r.moved.length > 0) {
    lines.push('');
    lines.push(renderTable(['user_id', 'kept id', 'rows archived'], r.moved.slice(0, SHOWN).map((m) => [m.user_id, m.kept_id, m.archived])));
    if (r.moved.length > SHOWN) lines.push(`… and ${plural(r.moved.length - SHOWN, 'more user_id')} (--json lists all)`);
  }
  lines.push('');

  const c = r.conservation!;
  const eq = `${n(c.rows_before)} ${c.holds ? '=' : '≠'} ${n(c.rows_after)} + ${n(c.rows_archived)}`;
  if (c.holds) {
    lines.push(`${paintStatus(style, 'ok')}    rows before = rows after + rows archived: ${eq}`);
  } else {
    const what = c.difference > 0 ? `gained ${plural(c.difference, 'row')}` : `lost ${plural(-c.difference, 'row')}`;
    const others = c.archive_grew_by - c.rows_archived;
    const who = others > 0 ? `another tsm dedupe moved ${plural(others, 'row')} into the archive meanwhile` : 'the application wrote while dedupe ran';
    lines.push(
      `${paintStatus(style, 'warn')}  rows before = rows after + rows archived: ${eq}: the table ${what} that this run did not move ` +
        `(${who}); the row-by-row check below covers every row this run moved`,
    );
  }
  const v = r.verification!;
  if (v.ok && v.moved === 0) {
    lines.push(`${paintStatus(style, 'ok')}    no rows moved by this run`);
  } else if (v.ok) {
    lines.push(`${paintStatus(style, 'ok')}    each of the ${plural(v.moved, 'moved row')} is in the archive exactly once and no longer in the table`);
  } else {
    lines.push(
      `${paintStatus(style, 'fail')}  moved rows: ${n(v.moved)} moved, ${n(v.in_archive)} found in the archive (${n(v.distinct_in_archive)} distinct), ${n(v.in_table)} still in the table`,
    );
  }
  lines.push('');
  if (r.ok) {
    lines.push(`${paintStatus(style, 'ok')}: no duplicate user_ids remain; next: \`${tsmCommand(r.schema, 'migrate up')}\` builds the unique index`);
  } else if (r.duplicates_remaining > 0) {
    lines.push(
      `${paintStatus(style, 'fail')}: ${plural(r.duplicates_remaining, 'user_id')} still ${r.duplicates_remaining === 1 ? 'has' : 'have'} duplicates ` +
        `(rows busy in the application, or new duplicates written meanwhile): run \`${tsmCommand(r.schema, 'dedupe')}\` again`,
    );
  } else {
    lines.push(`${paintStatus(style, 'fail')}: the row-by-row check failed: inspect ${archive} before going on`);
  }
  return lines.join('\n');
}
