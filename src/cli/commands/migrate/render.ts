/** Human output of the migrate commands (the JSON documents are the result objects themselves). */
import type { ChalkInstance } from 'chalk';
import { shownName } from '../../../db/ident.js';
import { oneLine } from '../../../migrate/context.js';
import type { DryRunResult } from '../../../migrate/dry-run.js';
import { fmtMs } from '../../../migrate/lock.js';
import type { RunResult } from '../../../migrate/run.js';
import type { MigrationRow } from '../../../migrate/status.js';
import { paintStatus } from '../../../report/style.js';
import { tsmCommand } from '../../../report/shell.js';
import { renderTable } from '../../../report/table.js';

export function header(command: string, database: string, schema: string, extra = ''): string {
  return `tsm ${command}  ${database}  ·  schema ${schema}${extra}`;
}

function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function renderRun(r: RunResult, style: ChalkInstance, database: string): string {
  const out = [header(`migrate ${r.direction}`, database, r.schema)];
  if (r.lock_waited_ms >= 1000) out.push(`waited ${fmtMs(Math.round(r.lock_waited_ms / 100) * 100)} for another tsm migrate to finish`);
  const verb = r.direction === 'up' ? 'applied' : 'reverted';
  for (const s of r.steps) {
    const extra = s.attempts > 1 ? `, ${s.attempts} attempts` : '';
    out.push(`${style.green(verb)}  ${s.name}  (${fmtMs(s.ms)}${extra})`);
    for (const n of s.notes) out.push(`          ${style.gray(oneLine(n))}`);
  }
  for (const w of r.warnings) out.push(`${paintStatus(style, 'warn')}: ${w}`);
  if (r.direction === 'up') {
    if (r.steps.length === 0 && r.remaining.length === 0) out.push(`${paintStatus(style, 'ok')}: up to date, no migration pending`);
    else if (r.remaining.length === 0) out.push(`${paintStatus(style, 'ok')}: ${plural(r.steps.length, 'migration')} applied, none pending`);
    else out.push(`${paintStatus(style, 'ok')}: ${plural(r.steps.length, 'migration')} applied, ${r.remaining.length} still pending`);
  } else if (r.steps.length === 0) {
    out.push(`${paintStatus(style, 'ok')}: nothing to revert, no migration applied`);
  } else {
    out.push(`${paintStatus(style, 'ok')}: ${plural(r.steps.length, 'migration')} reverted, ${r.remaining.length} still applied`);
  }
  return out.join('\n');
}

export function renderDryRun(r: DryRunResult, database: string, o: { lockTimeoutMs: number; indexLockTimeoutMs: number; lockRetries: number }): string {
  const out = [`-- ${header('migrate up --dry-run', database, r.schema)}`, '-- nothing below has been run: no lock taken, nothing created or changed'];
  if (r.migrations.length === 0) {
    out.push(r.refusal ? `-- up would refuse: ${oneLine(r.refusal)}` : `-- up to date: nothing pending (${plural(r.applied, 'migration')} applied)`);
    return out.join('\n');
  }
  out.push(
    `-- every statement runs with lock_timeout = ${fmtMs(o.lockTimeoutMs)}, statement_timeout = 0 and idle_in_transaction_session_timeout = 0 ` +
      `(SET LOCAL in each transaction; on the session, then RESET, for statements outside one and for tsm's catalog reads while it plans a migration)`,
    `-- a migration that cannot get a lock in time is rolled back and run again, up to ${o.lockRetries} more times (pauses of 0.5 s doubling to 5 s); ` +
      `CREATE/DROP INDEX CONCURRENTLY and REINDEX CONCURRENTLY wait up to ${fmtMs(o.indexLockTimeoutMs)} instead, once (they never make writers wait)`,
  );
  if (r.refusal) out.push(`-- up would refuse before applying anything: ${oneLine(r.refusal)}`);
  if (r.setup.length > 0) out.push('', '-- setup', ...r.setup);
  for (const m of r.migrations) {
    if (m.would_stop !== null) {
      out.push('', `-- ${m.name}`, `-- would stop here: ${oneLine(m.would_stop)}`);
      continue;
    }
    out.push('', `-- ${m.name} (${m.transaction ? 'one transaction, with its tsm_migrations row' : 'no transaction: each statement alone'})`);
    // Notes are tsm's own comments (never sent); one line each, whatever names they quote. Each
    // stands before the statement it explains (a partitioned index build is shown step by step).
    m.sql.forEach((sql, i) => {
      m.notes.forEach((n, k) => {
        if ((m.note_before[k] ?? 0) === i) out.push(`-- ${oneLine(n)}`);
      });
      out.push(sql);
    });
    m.notes.forEach((n, k) => {
      if ((m.note_before[k] ?? 0) >= m.sql.length) out.push(`-- ${oneLine(n)}`);
    });
  }
  if (r.migrations.length > 1) {
    out.push('', '-- each migration was planned against the database as it is now; one that follows another pending migration may plan differently once that one has run');
  }
  return out.join('\n');
}

const STATE_STATUS: Record<MigrationRow['state'], 'ok' | 'warn' | 'fail'> = { applied: 'ok', pending: 'warn', modified: 'fail', missing: 'fail' };

export interface StatusView {
  schema: string;
  table: boolean;
  migrations_dir: string;
  migrations: MigrationRow[];
  summary: Record<MigrationRow['state'], number>;
  up_to_date: boolean;
}

export function renderStatus(s: StatusView, style: ChalkInstance, database: string): string {
  const out = [header('migrate status', database, s.schema)];
  const paint = (state: MigrationRow['state']): string => {
    const st = STATE_STATUS[state];
    return st === 'ok' ? style.green(state) : st === 'warn' ? style.yellow(state) : style.red.bold(state);
  };
  const when = (iso: string | null): string => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '');
  out.push(renderTable(['migration', 'state', 'applied at'], s.migrations.map((m) => [m.name, paint(m.state), when(m.applied_at)]), undefined, { compact: true }));
  const earlier = s.migrations.filter((m) => m.applied_by_earlier !== undefined);
  if (earlier.length > 0) {
    const releases = [...new Set(earlier.map((m) => m.applied_by_earlier))].join(', ');
    out.push(`${earlier.map((m) => m.name).join(', ')}: applied by an earlier tsm (${releases}); this tsm ships a newer copy of the same migration, nothing to do`);
  }
  if (!s.table) out.push(`no ${shownName(s.schema)}.tsm_migrations table: tsm has not migrated this schema yet`);
  const parts = (['applied', 'pending', 'modified', 'missing'] as const).filter((k) => s.summary[k] > 0).map((k) => `${s.summary[k]} ${k}`);
  if (s.up_to_date) {
    out.push(`${paintStatus(style, 'ok')}: up to date (${parts.join(', ') || 'no migrations'})`);
  } else {
    const hints: string[] = [];
    if (s.summary.pending > 0) hints.push(`\`${tsmCommand(s.schema, 'migrate up')}\` applies the pending ones`);
    if (s.summary.modified > 0) hints.push('a modified file differs from what was applied: restore it, or ship the change as a new migration');
    if (s.summary.missing > 0) hints.push('a missing one was applied by another tsm version (or another --migrations-dir)');
    out.push(`${paintStatus(style, 'fail')}: ${parts.join(', ')}; ${hints.join('; ')}`);
  }
  return out.join('\n');
}
