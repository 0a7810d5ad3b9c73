/**
 * One migration, built the way node-pg-migrate 9's own `Migration.apply` builds it, but by tsm:
 * a `MigrationBuilder` over the given database, the action called with tsm's typed context,
 * and the statements it queued collected with `getSqlSteps()`. The real run then executes them
 * (session.ts); `--dry-run` shows them. node-pg-migrate's rules, kept:
 *   - `pgm.db.query` / `pgm.db.select` run at once, while the action runs (before its
 *     transaction; `CREATE INDEX CONCURRENTLY` relies on that);
 *   - `down` absent: `up` run in reverse mode (`enableReverseMode`); `false`: the direction is
 *     disabled;
 *   - an action declared with two parameters is the callback style `(pgm, run)`;
 *   - `pgm.noTransaction()` takes the migration out of a transaction;
 *   - `shorthands` accumulate over the files in order.
 */
import { silentLogger } from './files.js';
import type { MigrationAction, MigrationContext, MigrationModule } from './context.js';

/** What `pgm.db` runs on: a real connection, or one that records (dry-run). */
export interface BuildDb {
  query(text: string, values?: unknown[]): Promise<unknown>;
  select(text: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
}

export interface BuiltMigration {
  /** Whether the statements run in one transaction, together with the history row. */
  transaction: boolean;
  /** The statements queued with pgm.sql / pgm.createTable / …, in order. */
  statements: string[];
}

export type Direction = 'up' | 'down';

/** The action for a direction, by node-pg-migrate's rules (reverse: run `up` backwards). */
export function actionFor(mod: MigrationModule, direction: Direction, name: string): { action: MigrationAction; reverse: boolean } {
  if (direction === 'down' && mod.down === undefined) {
    if (typeof mod.up !== 'function') throw new Error(`${name} exports no up(pgm) function`);
    return { action: mod.up, reverse: true };
  }
  const action = mod[direction];
  if (action === false) throw new Error(`${name}: its ${direction} migration is disabled (${direction} = false)`);
  if (typeof action !== 'function') throw new Error(`${name} exports no ${direction}(pgm) function`);
  return { action, reverse: false };
}

export async function buildMigration(
  mod: MigrationModule,
  direction: Direction,
  name: string,
  db: BuildDb,
  ctx: MigrationContext,
  shorthands: Record<string, unknown> | undefined,
): Promise<BuiltMigration> {
  const { action, reverse } = actionFor(mod, direction, name);
  const { MigrationBuilder } = await import('node-pg-migrate');
  const pgm = new MigrationBuilder(db as never, shorthands as never, false, silentLogger);
  if (reverse) pgm.enableReverseMode();
  if (action.length === 2) {
    // node-pg-migrate's callback style: (pgm, run) => { …; run(); }
    await new Promise<void>((resolve, reject) => {
      try {
        (action as unknown as (p: typeof pgm, run: () => void) => unknown)(pgm, resolve);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  } else {
    await action(pgm, ctx);
  }
  return { transaction: pgm.isUsingTransaction(), statements: [...pgm.getSqlSteps()] };
}
