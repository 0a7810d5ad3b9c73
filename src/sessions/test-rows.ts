/**
 * The rows a test-write or bench run creates: their own tenant and a user-id prefix with a random
 * run id, e.g. `tsm-test:3f9c2a1b:7`. Every id handed out is remembered, and removal deletes
 * exactly those ids within that tenant, so a run never touches a row it did not create.
 */
import { randomBytes } from 'node:crypto';
import type { ClientBase, Pool } from 'pg';
import { qualify, quoteLiteral } from '../db/ident.js';

const BATCH = 10_000;

export class TestRows {
  readonly runId = randomBytes(4).toString('hex');
  readonly prefix: string;
  private readonly ids: string[] = [];

  constructor(
    readonly tenant: string,
    readonly schema: string,
  ) {
    this.prefix = `${tenant}:${this.runId}:`;
  }

  /** A fresh user id of this run. */
  next(): string {
    const id = `${this.prefix}${this.ids.length + 1}`;
    this.ids.push(id);
    return id;
  }

  /** All user ids handed out so far. */
  all(): readonly string[] {
    return this.ids;
  }

  /** Copy-paste SQL that removes this run's rows (for messages when tsm could not). */
  deleteSql(): string {
    return (
      `DELETE FROM ${qualify(this.schema, 'telegram_sessions')} WHERE tenant_id = ${quoteLiteral(this.tenant)} ` +
      `AND user_id LIKE ${quoteLiteral(this.prefix + '%')};`
    );
  }

  /** Deletes this run's rows (by exact user id, within the test tenant); returns how many. */
  async remove(db: ClientBase | Pool): Promise<number> {
    let removed = 0;
    for (let i = 0; i < this.ids.length; i += BATCH) {
      const r = await db.query(
        `DELETE FROM ${qualify(this.schema, 'telegram_sessions')} WHERE tenant_id = $1 AND user_id = ANY($2::varchar[])`,
        [this.tenant, this.ids.slice(i, i + BATCH)],
      );
      removed += r.rowCount ?? 0;
    }
    return removed;
  }

  /** Rows per user id for the given ids (0 for an id with no row), in that order. */
  static async counts(db: ClientBase | Pool, schema: string, ids: readonly string[]): Promise<number[]> {
    if (ids.length === 0) return [];
    const r = await db.query<{ n: number }>(
      `SELECT (SELECT count(*)::int FROM ${qualify(schema, 'telegram_sessions')} t WHERE t.user_id = u.id) AS n
         FROM unnest($1::varchar[]) WITH ORDINALITY AS u(id, ord) ORDER BY u.ord`,
      [ids],
    );
    return r.rows.map((x) => x.n);
  }
}
