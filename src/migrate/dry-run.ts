/**
 * `tsm migrate up --dry-run`: the SQL each pending migration would run, and nothing changed at
 * all — no advisory lock, no schema, no tsm_migrations table.
 *
 * It plans with the real run's code: the same session type (read-only), the same plan
 * (plan.ts: order, modified files, count), the same build of each migration (build.ts) and the
 * same script (session.ts `scriptFor`: BEGIN, SET LOCAL, the statements, the history row,
 * COMMIT). Only `pgm.db.query` differs: it records instead of executing (`CREATE INDEX
 * CONCURRENTLY` is such a direct statement), while `pgm.db.select` (the migration's
 * introspection) really runs, on a session where every transaction is READ ONLY.
 */
import type { Statement } from './history.js';
import { buildMigration, type BuildDb } from './build.js';
import { migrationContext } from './context.js';
import { listMigrations, resolveDir } from './files.js';
import { errorText, loadFailure, loadSteps, planRun, type LoadedStep } from './plan.js';
import { MigrateSession, scriptFor, type MigrateEnv } from './session.js';
import { shippedChecksums } from './status.js';

export interface PlannedMigration {
  name: string;
  /** Whether it runs in a transaction (with its tsm_migrations row). */
  transaction: boolean;
  /** Statements in order, as they would be sent (the history row's values are bind parameters). */
  sql: string[];
  /** What the migration decided, as `migrate up` would report it (data, never sent). */
  notes: string[];
  /** For each note, the index in `sql` of the statement it explains (sql.length: after the last). */
  note_before: number[];
  /** Why the real run would stop here (its preflight check), or null. */
  would_stop: string | null;
}

export interface DryRunResult {
  dry_run: true;
  schema: string;
  migrations_dir: string;
  /** Statements `up` would run before the first migration (schema, history table). */
  setup: string[];
  migrations: PlannedMigration[];
  /** Set when the real `up` would refuse before applying anything (modified files, a failing preflight). */
  refusal: string | null;
  /** Applied already (not shown). */
  applied: number;
}

export interface DryRunOptions {
  count: number | undefined;
  dir: string | undefined;
  lockTimeoutMs: number;
  allowModified: boolean;
}

export async function planUp(env: MigrateEnv, opts: DryRunOptions): Promise<DryRunResult> {
  const { schema } = env;
  const dir = resolveDir(opts.dir);
  const files = await listMigrations(dir);
  const shipped = await shippedChecksums();
  const session = await MigrateSession.open(env, { lockTimeoutMs: opts.lockTimeoutMs, readOnly: true });
  try {
    const { state, applied } = await session.history();
    const plan = planRun('up', files, applied, shipped, opts.count, dir);
    const result: DryRunResult = {
      dry_run: true,
      schema,
      migrations_dir: dir,
      setup: [],
      migrations: [],
      refusal: plan.refusal,
      applied: plan.rows.filter((r) => r.state === 'applied' || r.state === 'modified').length,
    };
    if (result.refusal === null && plan.modified.length > 0 && !opts.allowModified) {
      result.refusal = `applied migrations changed since applied: ${plan.modified.map((m) => m.name).join(', ')} (up refuses without --allow-modified)`;
    }
    if (plan.toRun.length === 0) return result;

    result.setup = session.setupSql(state).map(terminate);
    const loaded = await loadSteps(files, plan.toRun);
    for (const step of loaded.steps) result.migrations.push(await planOne(session, step, opts.lockTimeoutMs));
    if (loaded.failed !== null) {
      result.migrations.push({ name: loaded.failed.file.name, transaction: true, sql: [], notes: [], note_before: [], would_stop: loadFailure(loaded.failed) });
    }
    const stop = result.migrations.find((m) => m.would_stop !== null);
    if (stop && result.refusal === null) result.refusal = `${stop.name}: ${stop.would_stop}`;
    return result;
  } finally {
    await session.close();
  }
}

/** A statement as it would be sent, `;`-terminated; bind parameters said in a comment. */
function terminate(sql: string): string {
  const t = sql.trimEnd();
  return t.endsWith(';') ? t : t + ';';
}

function show(s: Statement): string {
  if (s.values.length === 0) return terminate(s.text);
  return `${terminate(s.text)}   -- bind parameters: ${s.values.length === 2 ? '$1 = the migration\'s name, $2 = the SHA-256 of its file' : "$1 = the migration's name"}`;
}

async function planOne(session: MigrateSession, step: LoadedStep, lockTimeoutMs: number): Promise<PlannedMigration> {
  const { file, mod } = step;
  const planned: PlannedMigration = { name: file.name, transaction: true, sql: [], notes: [], note_before: [], would_stop: null };
  const read = session.readDb();
  if (typeof mod.preflight === 'function') {
    try {
      await mod.preflight(read, session.schema, migrationContext(session.schema, []));
    } catch (err) {
      planned.would_stop = errorText(err);
      return planned;
    }
  }
  const direct: string[] = [];
  const recording: BuildDb = {
    query: async (text) => {
      direct.push(String(text));
      return { rows: [], rowCount: 0, command: null, fields: [] };
    },
    select: read.select,
  };
  try {
    // Direct statements come first in `sql`, so a note's position is the number recorded so far.
    const onNote = (): void => void planned.note_before.push(direct.length);
    const built = await buildMigration(mod, 'up', file.name, recording, migrationContext(session.schema, planned.notes, { onNote, dryRun: true }), step.shorthands);
    planned.transaction = built.transaction;
    // Direct statements run while the migration is built, before its transaction.
    planned.sql = [...direct.map(terminate), ...scriptFor(session.schema, built, 'up', file, lockTimeoutMs).map(show)];
  } catch (err) {
    planned.would_stop = errorText(err);
  }
  return planned;
}
