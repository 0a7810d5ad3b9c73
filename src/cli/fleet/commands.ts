/**
 * What the fleet needs to know about each command it can run per target: how many connections one
 * target holds at most (the connection budget counts in these), which of the command's options
 * make no sense over a fleet, and a one-line summary of its JSON document for the table.
 *
 * The command itself is run through its own `run(ctx, args)`, so whatever its engine does (and
 * whatever other changes it gets) applies per target unchanged. Summaries read the documents
 * defensively: a field a command stops sending makes the line plainer, never wrong.
 */
import { UsageError } from '../../errors.js';
import { parseDoctorOptions } from '../commands/doctor/options.js';
import { migrateOptions, migrationsDirOption } from '../commands/migrate/options.js';
import { parseTestWriteOptions } from '../commands/test-write/options.js';
import type { CommandArgs } from '../options.js';

export const FLEET_COMMANDS = ['doctor', 'migrate status', 'migrate up', 'test-write'] as const;
export type FleetCommand = (typeof FLEET_COMMANDS)[number];

export interface FleetProfile {
  readonly command: FleetCommand;
  /**
   * Checks the command's own options once, before anything connects (a bad flag is one exit 2,
   * not one failure per target), and returns the connections one target holds at most.
   */
  prepare(args: CommandArgs): { weight: number };
  /** One line for the table, from the command's JSON document. */
  summarize(data: unknown, exitCode: number): string;
}

type Doc = Record<string, unknown>;
const isDoc = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const arr = (v: unknown): unknown[] | undefined => (Array.isArray(v) ? v : undefined);
const plural = (n: number, one: string, many = one + 's'): string => `${n} ${n === 1 ? one : many}`;

function summarizeDoctor(data: unknown, exitCode: number): string {
  if (!isDoc(data) || !isDoc(data.summary)) return `exit ${exitCode}`;
  const s = data.summary;
  const ok = num(s.ok) ?? 0;
  const warn = num(s.warn) ?? 0;
  const fail = num(s.fail) ?? 0;
  const line = `${ok} ok, ${plural(warn, 'warning')}, ${fail} failing`;
  const failing = (arr(data.checks) ?? [])
    .filter((c): c is Doc => isDoc(c) && c.status === 'fail')
    .map((c) => String(c.id));
  if (failing.length === 0) return line;
  const shown = failing.slice(0, 3).join(', ') + (failing.length > 3 ? `, +${failing.length - 3} more` : '');
  return `${line}: ${shown}`;
}

function summarizeUp(data: unknown, exitCode: number): string {
  if (!isDoc(data)) return `exit ${exitCode}`;
  if (data.dry_run === true) {
    const planned = arr(data.migrations)?.length ?? 0;
    if (typeof data.refusal === 'string') return `dry run: would refuse: ${data.refusal}`;
    return planned === 0 ? 'dry run: up to date, nothing pending' : `dry run: ${plural(planned, 'migration')} would run`;
  }
  const steps = arr(data.steps);
  const remaining = arr(data.remaining)?.length ?? 0;
  if (steps === undefined) return `exit ${exitCode}`;
  if (steps.length === 0) return remaining === 0 ? 'up to date, nothing to do' : `nothing applied, ${remaining} still pending`;
  return `applied ${plural(steps.length, 'migration')}${remaining > 0 ? `, ${remaining} still pending` : ', none pending'}`;
}

function summarizeStatus(data: unknown, exitCode: number): string {
  if (!isDoc(data) || !isDoc(data.summary)) return `exit ${exitCode}`;
  const s = data.summary;
  const parts = (['pending', 'modified', 'missing', 'applied'] as const).filter((k) => (num(s[k]) ?? 0) > 0).map((k) => `${num(s[k])} ${k}`);
  if (data.up_to_date === true) return `up to date (${num(s.applied) ?? 0} applied)`;
  return parts.length > 0 ? parts.join(', ') : 'no migrations';
}

function summarizeTestWrite(data: unknown, exitCode: number): string {
  if (!isDoc(data)) return `exit ${exitCode}`;
  const results = (arr(data.results) ?? []).filter(isDoc);
  const race = isDoc(data.race) ? data.race : undefined;
  const raceText = race ? `race ${num(race.concurrency) ?? '?'} × ${num(race.rounds) ?? '?'}` : 'race';
  if (data.ok === true) return `all writes ok: ${plural(results.length, 'length')}, ${raceText}`;
  const bad = results.filter((r) => r.ok !== true).map((r) => `length ${num(r.length) ?? '?'}${typeof r.code === 'string' ? ` (${r.code})` : ''}`);
  if (race && race.ok !== true) {
    const errors = isDoc(race.errors) ? Object.keys(race.errors) : [];
    bad.push(`${raceText}: ${num(race.rows_left) ?? '?'} rows left${errors.length > 0 ? `, ${errors.join(', ')}` : ''}`);
  }
  return bad.length > 0 ? `failing: ${bad.join('; ')}` : `not ok (exit ${exitCode})`;
}

export const PROFILES: Record<FleetCommand, FleetProfile> = {
  doctor: {
    command: 'doctor',
    prepare(args) {
      const o = parseDoctorOptions(args);
      if (o.explain !== undefined) throw new UsageError('--explain needs no database: it cannot be combined with --targets or --targets-like');
      // One connection; a second, briefly, where a pooler is probed.
      return { weight: 2 };
    },
    summarize: summarizeDoctor,
  },
  'migrate status': {
    command: 'migrate status',
    prepare(args) {
      migrationsDirOption(args.options.migrationsDir);
      return { weight: 2 };
    },
    summarize: summarizeStatus,
  },
  'migrate up': {
    command: 'migrate up',
    prepare(args) {
      const o = migrateOptions(args);
      // The migrating session, the lock's own idle connection, and a pooler probe; a dry run reads only.
      return { weight: o.dryRun ? 2 : 3 };
    },
    summarize: summarizeUp,
  },
  'test-write': {
    command: 'test-write',
    prepare(args) {
      const o = parseTestWriteOptions(args);
      if (o.metricsPath !== undefined) {
        throw new UsageError('--metrics-file cannot be combined with --targets or --targets-like (every target would overwrite the same file)');
      }
      // The pool that races (--concurrency), the admin connection, and one more for a probe or the cleanup.
      return { weight: o.concurrency + 2 };
    },
    summarize: summarizeTestWrite,
  },
};
