import type { CatalogCheck } from '../types.js';
import { TABLE, normalizePredicate, uniqueIndexRemedy } from '../util.js';

/** One row per index on the table. */
export interface IndexRow {
  index: string;
  is_unique: boolean;
  is_valid: boolean;
  is_ready: boolean;
  is_immediate: boolean;
  /** Key columns in order ('(expression)' for an expression key). */
  keys: string[];
  /** The partial index's WHERE, or null. */
  predicate: string | null;
}

/** The predicate PostgreSQL can prove from `ON CONFLICT (user_id) WHERE user_id IS NOT NULL`. */
function predicateFits(predicate: string | null): boolean {
  return predicate == null || normalizePredicate(predicate) === 'user_idisnotnull';
}

/** Why an index on user_id cannot be the arbiter of ON CONFLICT (user_id); null when it can. */
export function whyNotArbiter(r: IndexRow): string | null {
  const keys = r.keys ?? [];
  if (!keys.includes('user_id')) return null; // not about user_id at all
  if (!r.is_unique) return 'not unique';
  if (keys.length !== 1) return `unique on (${keys.join(', ')}), not (user_id) alone`;
  if (!r.is_valid || !r.is_ready) return 'INVALID (see index.invalid)';
  if (!r.is_immediate) return 'DEFERRABLE, which ON CONFLICT cannot use';
  if (!predicateFits(r.predicate)) return `partial WHERE ${r.predicate}, not implied by user_id IS NOT NULL`;
  return null;
}

export function isArbiter(r: IndexRow): boolean {
  const keys = r.keys ?? [];
  return keys.length === 1 && keys[0] === 'user_id' && whyNotArbiter(r) === null;
}

export const indexUserIdUnique: CatalogCheck<IndexRow> = {
  id: 'index.user-id-unique',
  title: 'Unique index on user_id',
  severity: 'fail',
  kind: 'catalog',
  requires: ['table', 'user_id'],
  looksAt:
    'pg_index of telegram_sessions: a unique, valid, non-deferrable index (or UNIQUE constraint) under any ' +
    'name whose only key column is user_id, with no predicate or the predicate user_id IS NOT NULL.',
  why:
    'Without it nothing stops two rows for the same Telegram user, and INSERT … ON CONFLICT (user_id) fails ' +
    'with SQLSTATE 42P10: the root cause of the database_save_failed incident.',
  sql: `SELECT ic.relname::text                            AS index,
       i.indisunique AS is_unique, i.indisvalid AS is_valid,
       i.indisready  AS is_ready,  i.indimmediate AS is_immediate,
       array(SELECT coalesce(a.attname::text, '(expression)')
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS keys,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid)   AS predicate
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c     ON c.oid = i.indrelid
  JOIN pg_catalog.pg_class ic    ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1::text AND c.relname = '${TABLE}'
 ORDER BY ic.relname`,
  evaluate(rows) {
    const good = rows.find(isArbiter);
    if (good) {
      return {
        status: 'ok',
        detail: `${good.index}: unique on (user_id)${good.predicate ? ` WHERE ${good.predicate}` : ''}`,
      };
    }
    const nearMisses = rows
      .map((r) => ({ r, why: whyNotArbiter(r) }))
      .filter((x) => x.why !== null)
      .map((x) => `${x.r.index} is ${x.why}`);
    const detail = ['no unique index on (user_id)', ...nearMisses].join('; ');
    return { status: 'fail', detail };
  },
  remedy: uniqueIndexRemedy,
};
