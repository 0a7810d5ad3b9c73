/**
 * What a `migrate up` / `down` would do, decided from the files and the history alone (no
 * database access): shared by the real run (run.ts) and `--dry-run` (dry-run.ts), so both refuse
 * and choose the same way.
 */
import { classifyError } from '../db/classify.js';
import type { Direction } from './build.js';
import { oneLine, type MigrationModule } from './context.js';
import type { MigrationFile } from './files.js';
import type { AppliedRow } from './history.js';
import { loadModule } from './loader.js';
import { compareStatus, type MigrationRow } from './status.js';

export interface RunPlan {
  rows: MigrationRow[];
  /** Applied, but the file changed since (up refuses them unless --allow-modified). */
  modified: MigrationRow[];
  /** Warnings to show (modified files, applied migrations without a file). */
  warnings: string[];
  /** Why the run cannot start (out of order, a migration to revert has no file), or null. */
  refusal: string | null;
  /** up: the pending migrations to apply, in order; down: the applied ones to revert, last first. */
  toRun: MigrationFile[];
  /** up: still pending afterwards; down: still applied afterwards. */
  remaining: string[];
}

export function planRun(
  direction: Direction,
  files: MigrationFile[],
  applied: AppliedRow[],
  shipped: ReadonlyMap<string, string>,
  count: number | undefined,
  dir: string,
): RunPlan {
  const rows = compareStatus(files, applied, shipped);
  const named = (state: MigrationRow['state']): MigrationRow[] => rows.filter((r) => r.state === state);
  const byName = new Map(files.map((f) => [f.name, f]));
  const plan: RunPlan = { rows, modified: named('modified'), warnings: [], refusal: null, toRun: [], remaining: [] };
  if (plan.modified.length > 0) plan.warnings.push(`changed since applied: ${modifiedList(plan.modified)}`);
  const missing = named('missing');
  if (missing.length > 0) {
    plan.warnings.push(`applied but not in ${dir}: ${missing.map((m) => m.name).join(', ')} (applied by another tsm version?)`);
  }

  if (direction === 'up') {
    const pending = named('pending').map((r) => r.name);
    // node-pg-migrate's order rule, said plainly: nothing pending may come before something applied.
    const lastApplied = rows.reduce((i, r, idx) => (r.state !== 'pending' && r.state !== 'missing' ? idx : i), -1);
    const early = rows.slice(0, lastApplied + 1).filter((r) => r.state === 'pending');
    if (early.length > 0) {
      plan.refusal =
        `out of order: ${early.map((r) => r.name).join(', ')} ${early.length === 1 ? 'is' : 'are'} pending but ` +
        `${rows[lastApplied]!.name}, which comes after, is applied; nothing was applied`;
    }
    const run = pending.slice(0, count ?? pending.length);
    plan.toRun = run.map((n) => byName.get(n)!);
    plan.remaining = pending.slice(run.length);
  } else {
    const appliedNames = applied.map((a) => a.name);
    const revert = appliedNames.slice(-(count ?? 1)).reverse();
    plan.remaining = appliedNames.slice(0, appliedNames.length - revert.length);
    const noFile = revert.filter((n) => !byName.has(n));
    if (noFile.length > 0) plan.refusal = `cannot revert ${noFile.join(', ')}: no such migration file in ${dir}; nothing was reverted`;
    plan.toRun = revert.flatMap((n) => byName.get(n) ?? []);
  }
  return plan;
}

export function modifiedList(modified: MigrationRow[]): string {
  return modified.map((m) => `${m.name} (applied sha256 ${m.applied_checksum?.slice(0, 12)}…, file now ${m.checksum?.slice(0, 12)}…)`).join(', ');
}

export interface LoadedStep {
  file: MigrationFile;
  mod: MigrationModule;
  /** node-pg-migrate's rule: shorthands accumulate over the files in order. */
  shorthands: Record<string, unknown> | undefined;
}

export interface Loaded {
  steps: LoadedStep[];
  /** The first file that could not be loaded (the run stops before it), or null. */
  failed: { file: MigrationFile; error: unknown } | null;
}

/**
 * Loads the modules of `toRun` and, for their shorthands, of every file before the last of them
 * (node-pg-migrate loads every file too, and refuses to run when one cannot be loaded).
 */
export async function loadSteps(files: MigrationFile[], toRun: MigrationFile[]): Promise<Loaded> {
  const wanted = new Set(toRun.map((f) => f.name));
  const last = Math.max(-1, ...files.map((f, i) => (wanted.has(f.name) ? i : -1)));
  const byName = new Map<string, LoadedStep>();
  let shorthands: Record<string, unknown> | undefined;
  for (const file of files.slice(0, last + 1)) {
    let mod: MigrationModule;
    try {
      mod = await loadModule(file.path);
    } catch (error) {
      return { steps: toRun.flatMap((f) => byName.get(f.name) ?? []), failed: { file, error } };
    }
    if (mod.shorthands) shorthands = { ...shorthands, ...mod.shorthands };
    if (wanted.has(file.name)) byName.set(file.name, { file, mod, shorthands });
  }
  return { steps: toRun.map((f) => byName.get(f.name)!), failed: null };
}

export function loadFailure(failed: { file: MigrationFile; error: unknown }): string {
  return `cannot load migration ${failed.file.name} (${failed.file.path}): ${errorText(failed.error)}`;
}

/** An error as one line: a migration's own refusal as it is, a server error with its code. */
export function errorText(err: unknown): string {
  const c = classifyError(err);
  // A migration's own refusal (a plain Error, or RAISE EXCEPTION → P0001) is already a sentence;
  // it may quote a name from the catalog, so it is kept whole, on one line.
  if (c.sqlstate === null || c.sqlstate === 'P0001') return oneLine(c.message.trim());
  const first = c.message.split('\n')[0] ?? '';
  return `${oneLine(first)} (${c.code}, SQLSTATE ${c.sqlstate})`;
}
