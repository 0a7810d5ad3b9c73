/**
 * `tsm migrate up` / `down`, top-down. tsm runs each migration itself with node-pg-migrate's
 * MigrationBuilder (build.ts) inside its own guarantees:
 *   1. one session owns the connection, its settings and tsm's advisory lock (session.ts);
 *   2. the history is read only after the lock is ours (a second `up` then finds nothing to do);
 *   3. refusal when an applied migration's file changed (checksums), unless --allow-modified;
 *      shipped migrations recorded by an earlier tsm release count as applied (earlier.ts);
 *   4. every pending migration's preflight check before anything is touched (duplicates stop the
 *      run with nothing applied, not after three of five migrations);
 *   5. `lock_timeout` on every statement; on 55P03 / 40P01 the migration is rolled back and run
 *      again with backoff (lock.ts, on the retry module src/db/retry.ts), a bounded number of
 *      times, then a clear error naming the timeout and the sessions holding the table.
 * Before any of this, changing nothing: a read-only server (hot standby, default_transaction_
 * read_only) is refused (exit 1) and so is a transaction-mode pooler (exit 2); a role that does
 * not own the table, or cannot use tsm_migrations, is refused before anything is created.
 * Ctrl-C (env.signal): the running statement is cancelled on the server and the error says what
 * is left and what the next command does (code `interrupted`).
 * Each migration commits on its own, together with its row in tsm_migrations: one transaction
 * over all of them would hold ALTER TABLE's ACCESS EXCLUSIVE lock until the end, and CREATE
 * INDEX CONCURRENTLY cannot run inside one at all.
 *
 * The engine returns results and throws typed errors (FailError: exit 1); it never prints.
 */
import { shownName } from '../db/ident.js';
import { classifyError } from '../db/classify.js';
import { FailError, TsmError } from '../errors.js';
import { tsmCommand } from '../report/shell.js';
import { migrationContext, oneLine, refusalOf } from './context.js';
import { listMigrations, resolveDir } from './files.js';
import type { HistoryState } from './history.js';
import { Interrupted, fmtMs, isLockFailure } from './lock.js';
import { errorText, loadFailure, loadSteps, modifiedList, planRun } from './plan.js';
import { MigrateSession, describeBlockers, shownTable, type MigrateEnv, type StepResult } from './session.js';
import { shippedChecksums } from './status.js';
import { timeoutName } from './timeouts.js';

export type { MigrateEnv, StepResult } from './session.js';
export { errorText } from './plan.js';

export interface RunOptions {
  direction: 'up' | 'down';
  /** up: how many pending to apply (undefined: all); down: how many applied to revert. */
  count: number | undefined;
  dir: string | undefined;
  lockTimeoutMs: number;
  /** lock_timeout of the concurrent index statements (they never make writers wait; not retried). */
  indexLockTimeoutMs: number;
  /** Retries of a migration that could not get its lock in time. */
  lockRetries: number;
  lockWaitMs: number;
  allowModified: boolean;
}

export interface RunResult {
  direction: 'up' | 'down';
  schema: string;
  migrations_dir: string;
  lock_waited_ms: number;
  /** The migrations this run applied (up) or reverted (down), in order. */
  steps: StepResult[];
  /** up: still pending afterwards; down: still applied afterwards. */
  remaining: string[];
  warnings: string[];
}

/**
 * Why the current role cannot run the planned migrations (one line), or null: migrations alter
 * telegram_sessions, which only its owner (or a member of the owning role) may do; creating the
 * schema or tsm_migrations needs CREATE on the database or schema.
 */
export function ownershipProblem(state: HistoryState, schema: string): string | null {
  if (state.tableOwner !== null && !state.ownsTable) {
    return (
      `role ${state.role} does not own ${shownTable(schema, 'telegram_sessions')} (its owner is ${state.tableOwner}): ` +
      `migrations alter the table, so run them as ${shownName(state.tableOwner)} or a member of it`
    );
  }
  if ((!state.schema || !state.table) && !state.canCreate) {
    return state.schema
      ? `role ${state.role} cannot create ${shownName(schema)}.tsm_migrations: no CREATE privilege on schema ${shownName(schema)} (GRANT CREATE ON SCHEMA ${shownName(schema)} TO ${shownName(state.role)})`
      : `role ${state.role} cannot create schema ${shownName(schema)}: no CREATE privilege on the database (create the schema first, or GRANT CREATE ON DATABASE)`;
  }
  return null;
}

export async function runMigrations(env: MigrateEnv, opts: RunOptions): Promise<RunResult> {
  const { schema } = env;
  const dir = resolveDir(opts.dir);
  const files = await listMigrations(dir);
  const shipped = await shippedChecksums();
  const result: RunResult = { direction: opts.direction, schema, migrations_dir: dir, lock_waited_ms: 0, steps: [], remaining: [], warnings: [] };
  const nothing = `nothing was ${opts.direction === 'up' ? 'applied' : 'reverted'}`;

  const session = await MigrateSession.open(env, { lockTimeoutMs: opts.lockTimeoutMs, indexLockTimeoutMs: opts.indexLockTimeoutMs, lockRetries: opts.lockRetries });
  let current: string | null = null;
  try {
    // Read-only server or transaction-mode pooler: refused before anything (no lock, no preflight).
    session.refuseIfNeeded();
    result.lock_waited_ms = await session.lock(opts.lockWaitMs);
    // Only now, under the lock, is the history read: a second `up` sees what the first applied.
    const { state, applied } = await session.history(true);
    const plan = planRun(opts.direction, files, applied, shipped, opts.count, dir);
    if (plan.refusal !== null) throw new FailError(plan.refusal);
    if (opts.direction === 'up' && plan.modified.length > 0 && !opts.allowModified) {
      throw new FailError(
        `refusing to migrate: ${plan.modified.length === 1 ? 'an applied migration was' : `${plan.modified.length} applied migrations were`} ` +
          `changed since applied: ${modifiedList(plan.modified)}; \`${tsmCommand(schema, 'migrate status')}\` lists them; --allow-modified runs anyway; ${nothing}`,
        { code: 'modified' },
      );
    }
    result.warnings = plan.warnings;
    for (const w of result.warnings) env.log(`tsm migrate: warning: ${w}`);
    result.remaining = plan.remaining;
    if (plan.toRun.length === 0) return result;

    const owner = ownershipProblem(state, schema);
    if (owner !== null) throw new FailError(`${owner}; nothing was changed`, { code: 'permission_denied' });

    const loaded = await loadSteps(files, plan.toRun);
    if (loaded.failed !== null) throw new FailError(`${loadFailure(loaded.failed)}; ${nothing}`);

    if (opts.direction === 'up') {
      // Every preflight check before anything is touched (read-only, one READ ONLY transaction).
      await session.preflight(async (db) => {
        for (const step of loaded.steps) {
          if (typeof step.mod.preflight !== 'function') continue;
          try {
            await step.mod.preflight(db, schema, migrationContext(schema, []));
          } catch (err) {
            if (err instanceof Interrupted || env.signal?.aborted) throw err;
            throw new FailError(`${step.file.name}: ${errorText(err)}; ${nothing}`, refusalOf(err) ?? { code: 'preflight' });
          }
        }
      });
      await session.setup(state);
    }

    for (const step of loaded.steps) {
      current = step.file.name;
      const started = Date.now();
      try {
        result.steps.push(await session.apply(step, opts.direction));
      } catch (err) {
        if (env.signal?.aborted || err instanceof TsmError) throw err;
        const refusal = refusalOf(err);
        throw new FailError(await failureMessage(session, opts, result, step.file.name, err, Date.now() - started), {
          code: refusal?.code ?? 'migration_failed',
          data: { ...refusal?.data, applied: result.steps.map((s) => s.name), failed: step.file.name },
        });
      }
      current = null;
    }
    return result;
  } catch (err) {
    if (env.signal?.aborted) throw await interruption(session, opts, result, current, err);
    throw err;
  } finally {
    await session.close();
  }
}

/** One line: the migration, the error (a timeout named with where its value came from), blockers, leftovers, what was done before. */
async function failureMessage(session: MigrateSession, opts: RunOptions, result: RunResult, name: string, err: unknown, ms: number): Promise<string> {
  const done = result.steps.map((s) => s.name);
  const doneText =
    done.length > 0 ? `; ${opts.direction === 'up' ? 'applied' : 'reverted'} before it: ${done.join(', ')}` : `; nothing was ${opts.direction === 'up' ? 'applied' : 'reverted'}`;
  const c = classifyError(err);
  const named = timeoutName(err, {
    lockTimeoutMs: opts.lockTimeoutMs,
    server: session.server.timeouts,
    underTsm: (err as { tsmUnderTsm?: boolean }).tsmUnderTsm ?? true,
    cancelledByTsm: session.cancelledByTsm,
  });
  let what: string;
  if (named === null) {
    what = oneLine(errorText(err));
  } else {
    const attempts = (err as { tsmAttempts?: number }).tsmAttempts ?? 1;
    const over = isLockFailure(err) && attempts > 1 ? ` in all ${attempts} attempts over ${fmtMs(Math.round(ms / 100) * 100)}` : '';
    const server = c.message.split('\n')[0] ?? '';
    const inner = serverLine(err);
    // A migration that wrapped the server's error to say where it happened (0004: "step 4 of 9
    // (build …): <server message>; …"): the timeout is named right before the server's words.
    what =
      inner !== null && inner !== server && server.includes(inner)
        ? oneLine(server.replace(inner, `${named}${over}: ${inner} (SQLSTATE ${c.sqlstate})`))
        : `${named}${over}: ${oneLine(server)} (SQLSTATE ${c.sqlstate})`;
  }
  let text = `${name}${opts.direction === 'down' ? ' (down)' : ''} failed: ${what}`;
  if (isLockFailure(err)) text += describeBlockers(await session.tableBlockers().catch(() => []));
  text += await leftoverText(session, result.schema);
  return text + doneText;
}

/** The first line of the innermost error in a `cause` chain (the server's own words), or null. */
function serverLine(err: unknown): string | null {
  let e: unknown = err;
  for (let depth = 0; depth < 10; depth++) {
    const cause = e !== null && typeof e === 'object' ? (e as { cause?: unknown }).cause : undefined;
    if (cause === undefined || cause === null) break;
    e = cause;
  }
  if (e === err || !(e instanceof Error)) return null;
  return e.message.split('\n')[0] ?? null;
}

/** "; INVALID index left behind: … (the next `tsm migrate up` drops and rebuilds it)", or ''. */
async function leftoverText(session: MigrateSession, schema: string): Promise<string> {
  const leftovers = await session.invalidLeftovers().catch(() => []);
  if (leftovers.length === 0) return '';
  return (
    `; INVALID index left behind: ${leftovers.map((n) => oneLine(shownName(n))).join(', ')} ` +
    `(the next \`${tsmCommand(schema, 'migrate up')}\` drops and rebuilds it)`
  );
}

/**
 * Ctrl-C: what was stopped (cancelled on the server, rolled back or not), what was applied before,
 * what is left, and what the next command does. FailError with code `interrupted` (the CLI exits
 * 130 from its cleanup stack with this text as the note).
 */
async function interruption(session: MigrateSession, opts: RunOptions, result: RunResult, current: string | null, err: unknown): Promise<FailError> {
  const up = opts.direction === 'up';
  const done = result.steps.map((s) => s.name);
  const parts: string[] = [];
  if (err instanceof Interrupted && err.where === 'lock') {
    parts.push("stopped while waiting for another tsm migrate's lock");
  } else if (current !== null) {
    if (session.cancelledByTsm && session.phase === 'transaction') parts.push(`${current} cancelled on the server and rolled back (nothing of it is left)`);
    else if (session.cancelledByTsm) parts.push(`${current} cancelled on the server`);
    else parts.push(`stopped before ${current} ${up ? 'was applied' : 'was reverted'}`);
  } else {
    parts.push('stopped before any migration ran');
  }
  parts.push(done.length > 0 ? `${up ? 'applied' : 'reverted'} before it: ${done.join(', ')}` : `nothing was ${up ? 'applied' : 'reverted'}`);
  const left = await leftoverText(session, result.schema);
  if (left !== '') parts.push(left.slice(2));
  else if (current !== null && up) parts.push(`the next \`${tsmCommand(result.schema, 'migrate up')}\` applies the rest`);
  return new FailError(parts.join('; '), { code: 'interrupted', data: { applied: done, stopped_in: current } });
}
