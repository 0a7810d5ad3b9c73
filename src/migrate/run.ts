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
 *      again with backoff (retry.ts), a bounded number of times, then a clear error.
 * Each migration commits on its own, together with its row in tsm_migrations: one transaction
 * over all of them would hold ALTER TABLE's ACCESS EXCLUSIVE lock until the end, and CREATE
 * INDEX CONCURRENTLY cannot run inside one at all.
 *
 * The engine returns results and throws typed errors (FailError: exit 1); it never prints.
 */
import { shownName } from '../db/ident.js';
import { FailError } from '../errors.js';
import { tsmCommand } from '../report/shell.js';
import { migrationContext, oneLine, refusalOf } from './context.js';
import { listMigrations, resolveDir } from './files.js';
import { fmtMs } from './lock.js';
import { errorText, loadFailure, loadSteps, modifiedList, planRun } from './plan.js';
import { RETRY, isLockFailure } from './retry.js';
import { MigrateSession, describeBlockers, type MigrateEnv, type StepResult } from './session.js';
import { shippedChecksums } from './status.js';

export type { MigrateEnv, StepResult } from './session.js';
export { errorText } from './plan.js';

export interface RunOptions {
  direction: 'up' | 'down';
  /** up: how many pending to apply (undefined: all); down: how many applied to revert. */
  count: number | undefined;
  dir: string | undefined;
  lockTimeoutMs: number;
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

export async function runMigrations(env: MigrateEnv, opts: RunOptions): Promise<RunResult> {
  const { schema } = env;
  const dir = resolveDir(opts.dir);
  const files = await listMigrations(dir);
  const shipped = await shippedChecksums();
  const result: RunResult = { direction: opts.direction, schema, migrations_dir: dir, lock_waited_ms: 0, steps: [], remaining: [], warnings: [] };

  const session = await MigrateSession.open(env, { lockTimeoutMs: opts.lockTimeoutMs });
  try {
    result.lock_waited_ms = await session.lock(opts.lockWaitMs);
    // Only now, under the lock, is the history read: a second `up` sees what the first applied.
    const { state, applied } = await session.history();
    const plan = planRun(opts.direction, files, applied, shipped, opts.count, dir);
    if (plan.refusal !== null) throw new FailError(plan.refusal);
    if (opts.direction === 'up' && plan.modified.length > 0 && !opts.allowModified) {
      throw new FailError(
        `refusing to migrate: ${plan.modified.length === 1 ? 'an applied migration was' : `${plan.modified.length} applied migrations were`} ` +
          `changed since applied: ${modifiedList(plan.modified)}; \`${tsmCommand(schema, 'migrate status')}\` lists them; --allow-modified runs anyway; nothing was applied`,
      );
    }
    result.warnings = plan.warnings;
    for (const w of result.warnings) env.log(`tsm migrate: warning: ${w}`);
    result.remaining = plan.remaining;
    if (plan.toRun.length === 0) return result;

    const loaded = await loadSteps(files, plan.toRun);
    if (loaded.failed !== null) throw new FailError(`${loadFailure(loaded.failed)}; nothing was ${opts.direction === 'up' ? 'applied' : 'reverted'}`);

    if (opts.direction === 'up') {
      // Every preflight check before anything is touched (read-only).
      for (const step of loaded.steps) {
        if (typeof step.mod.preflight !== 'function') continue;
        try {
          await step.mod.preflight(session.readDb(), schema, migrationContext(schema, []));
        } catch (err) {
          throw new FailError(`${step.file.name}: ${errorText(err)}; nothing was applied`, refusalOf(err));
        }
      }
      await session.setup(state);
    }

    for (const step of loaded.steps) {
      const started = Date.now();
      try {
        result.steps.push(await session.apply(step, opts.direction));
      } catch (err) {
        throw new FailError(await failureMessage(session, opts, result, step.file.name, err, Date.now() - started), refusalOf(err));
      }
    }
    return result;
  } finally {
    await session.close();
  }
}

async function failureMessage(session: MigrateSession, opts: RunOptions, result: RunResult, name: string, err: unknown, ms: number): Promise<string> {
  const done = result.steps.map((s) => s.name);
  const doneText =
    done.length > 0 ? `; ${opts.direction === 'up' ? 'applied' : 'reverted'} before it: ${done.join(', ')}` : `; nothing was ${opts.direction === 'up' ? 'applied' : 'reverted'}`;
  let text = `${name}${opts.direction === 'down' ? ' (down)' : ''} failed: ${oneLine(errorText(err))}`;
  if (isLockFailure(err)) {
    const attempts = (err as { tsmAttempts?: number }).tsmAttempts ?? RETRY.attempts;
    const blockers = await session.tableBlockers().catch(() => []);
    text += ` — no lock within --lock-timeout ${fmtMs(opts.lockTimeoutMs)} in ${attempts} attempts over ${fmtMs(Math.round(ms / 100) * 100)}${describeBlockers(blockers)}`;
  }
  const leftovers = await session.invalidLeftovers().catch(() => []);
  if (leftovers.length > 0) {
    text +=
      `; INVALID index left behind: ${leftovers.map((n) => oneLine(shownName(n))).join(', ')} ` +
      `(the next \`${tsmCommand(result.schema, 'migrate up')}\` drops and rebuilds it)`;
  }
  return text + doneText;
}
