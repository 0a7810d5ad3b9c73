/**
 * `tsm migrate up --dry-run`: the SQL each pending migration would run, and nothing changed at
 * all — no advisory lock, no schema, no tsm_migrations table.
 *
 * It plans with the real run's code: the same session (read-only), the same checks (a read-only
 * server, a transaction-mode pooler, the owner of the table: reported as what `up` would refuse),
 * the same plan (plan.ts: order, modified files, count), the same build of each migration
 * (build.ts) and the same script (session.ts `planScript`: the timeouts, BEGIN, SET LOCAL, the
 * backend check, the statements, the history row, COMMIT). Only `pgm.db.query` differs: it
 * records instead of executing (`CREATE INDEX CONCURRENTLY` is such a direct statement), while
 * `pgm.db.select` (the migration's introspection) really runs, inside a READ ONLY transaction
 * (one per migration), so the dry run works on a hot standby and through any pooler.
 */
import type { Pooling } from '../db/server.js';
import type { Statement } from './history.js';
import { buildMigration, type BuildDb } from './build.js';
import { migrationContext } from './context.js';
import { listMigrations, resolveDir } from './files.js';
import { Interrupted } from './lock.js';
import { errorText, loadFailure, loadSteps, planRun, type LoadedStep } from './plan.js';
import { ownershipProblem } from './run.js';
import { MigrateSession, planScript, type MigrateEnv } from './session.js';
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
  /** What is between tsm and the server: `direct`, a `session`-mode or a `transaction`-mode pooler. */
  pooling: Pooling;
  /** A hot standby, or sessions that default to read-only: `up` would be refused. */
  read_only: boolean;
  /** Statements `up` would run before the first migration (schema, history table). */
  setup: string[];
  migrations: PlannedMigration[];
  /** Set when the real `up` would refuse before applying anything (read-only server, pooler, modified files, owner, a failing preflight). */
  refusal: string | null;
  /** Applied already (not shown). */
  applied: number;
}

export interface DryRunOptions {
  count: number | undefined;
  dir: string | undefined;
  lockTimeoutMs: number;
  indexLockTimeoutMs: number;
  allowModified: boolean;
}

export async function planUp(env: MigrateEnv, opts: DryRunOptions): Promise<DryRunResult> {
  const { schema } = env;
  const dir = resolveDir(opts.dir);
  const files = await listMigrations(dir);
  const shipped = await shippedChecksums();
  const session = await MigrateSession.open(env, { lockTimeoutMs: opts.lockTimeoutMs, indexLockTimeoutMs: opts.indexLockTimeoutMs, lockRetries: 0, readOnly: true });
  try {
    const refusals: string[] = [];
    const server = session.refusalText();
    if (server !== null) refusals.push(server);
    const { state, applied } = await session.history(false);
    const plan = planRun('up', files, applied, shipped, opts.count, dir);
    const result: DryRunResult = {
      dry_run: true,
      schema,
      migrations_dir: dir,
      pooling: session.server.pooling,
      read_only: session.server.state.inRecovery || session.server.state.defaultReadOnly,
      setup: [],
      migrations: [],
      refusal: null,
      applied: plan.rows.filter((r) => r.state === 'applied' || r.state === 'modified').length,
    };
    if (plan.refusal !== null) refusals.push(plan.refusal);
    if (plan.modified.length > 0 && !opts.allowModified) {
      refusals.push(`applied migrations changed since applied: ${plan.modified.map((m) => m.name).join(', ')} (up refuses without --allow-modified)`);
    }
    if (plan.toRun.length > 0) {
      const owner = ownershipProblem(state, schema);
      if (owner !== null) refusals.push(owner);
    }
    result.refusal = refusals[0] ?? null;
    if (plan.toRun.length === 0) return result;

    result.setup = session.setupSql(state).map(show);
    const loaded = await loadSteps(files, plan.toRun);
    for (const step of loaded.steps) result.migrations.push(await planOne(session, step, opts));
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

/** A statement as it would be sent, `;`-terminated; bind parameters and tsm's checks said in a comment. */
function show(s: Statement): string {
  const t = s.text.trimEnd();
  const text = t.endsWith(';') ? t : t + ';';
  if (/^SELECT pg_catalog\.pg_backend_pid\(\) AS pid$/.test(t)) return `${text}   -- tsm checks that this is the backend holding its migration lock`;
  if (s.values.length === 0) return text;
  return `${text}   -- bind parameters: ${s.values.length === 2 ? "$1 = the migration's name, $2 = the SHA-256 of its file" : "$1 = the migration's name"}`;
}

async function planOne(session: MigrateSession, step: LoadedStep, opts: DryRunOptions): Promise<PlannedMigration> {
  const { file, mod } = step;
  const planned: PlannedMigration = { name: file.name, transaction: true, sql: [], notes: [], note_before: [], would_stop: null };
  try {
    await session.inTransaction(true, async () => {
      const read = session.readDb();
      if (typeof mod.preflight === 'function') {
        try {
          await mod.preflight(read, session.schema, migrationContext(session.schema, []));
        } catch (err) {
          if (err instanceof Interrupted) throw err;
          planned.would_stop = errorText(err);
          return;
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
      // Each note is shown just before the statement it precedes: record how many direct
      // statements (those a migration runs while it is built) came before it.
      const directBefore: number[] = [];
      const onNote = (): void => void directBefore.push(direct.length);
      const built = await buildMigration(mod, 'up', file.name, recording, migrationContext(session.schema, planned.notes, { onNote, dryRun: true }), step.shorthands);
      planned.transaction = built.transaction;
      const { script, directAt, afterDirect } = planScript(session.schema, built, direct, 'up', file, opts.lockTimeoutMs, opts.indexLockTimeoutMs);
      planned.sql = script.map(show);
      // A note goes before the statement it explains, with what tsm sends for that statement (its
      // backend check, its lock_timeout), and after what the statement before it sent to finish.
      planned.note_before = directBefore.map((d) => (direct.length === 0 ? 0 : (directAt[d] ?? afterDirect)));
    });
  } catch (err) {
    if (err instanceof Interrupted) throw err;
    planned.would_stop = errorText(err);
  }
  return planned;
}
