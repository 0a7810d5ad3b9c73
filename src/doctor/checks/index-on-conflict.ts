import type { Client } from 'pg';
import { classifyError } from '../../db/classify.js';
import { inReadOnlyTransaction, readOnlyText } from '../readonly.js';
import type { CustomCheck, DoctorEnv } from '../types.js';
import { quoteIdent } from '../../db/ident.js';
import { createUniqueIndexSql, remedyText, tableRef, uniqueIndexRemedy } from '../util.js';

/**
 * The statement applications run, planned (EXPLAIN without ANALYZE), never executed; then the
 * deferrable indexes of the table: the planner accepts one as arbiter, but execution refuses it.
 */
function probeSql(env: DoctorEnv): string {
  return (
    `EXPLAIN (COSTS OFF) INSERT INTO ${tableRef(env)} (user_id) VALUES (NULL) ` +
    `ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE SET user_id = EXCLUDED.user_id;\n` +
    `SELECT ic.relname::text AS deferrable_index FROM pg_catalog.pg_index i ` +
    `JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid ` +
    `WHERE i.indrelid = '${tableRef(env).replace(/'/g, "''")}'::regclass AND NOT i.indimmediate`
  );
}

export const indexOnConflict: CustomCheck = {
  id: 'index.on-conflict',
  title: 'INSERT … ON CONFLICT (user_id) can be planned',
  severity: 'fail',
  kind: 'custom',
  requires: ['table', 'user_id'],
  looksAt:
    'Asks the planner itself: EXPLAIN (without ANALYZE, so nothing runs) of INSERT … ON CONFLICT (user_id) ' +
    'WHERE user_id IS NOT NULL DO UPDATE, inside a READ ONLY transaction that is rolled back. ' +
    'Reports the arbiter index the planner picks, and fails when it is DEFERRABLE (the planner accepts ' +
    'such an index, execution refuses it).',
  why:
    'This is the statement that failed in the incident: with no unique index the planner can use as ' +
    'arbiter, PostgreSQL raises SQLSTATE 42P10 and every save fails. Catalog checks can miss subtle ' +
    'mismatches (collation, operator class, predicate); the planner cannot.',
  sql: (env) => readOnlyText(probeSql(env)),
  async run(client: Client, env: DoctorEnv) {
    try {
      const [explained, deferrable] = await inReadOnlyTransaction(client, probeSql(env));
      const plan = explained.rows.map((r) => String(Object.values(r)[0]));
      const line = plan.map((l) => /Conflict Arbiter Indexes:\s*(.+)$/.exec(l)?.[1]).find((x) => x);
      const arbiters = (line ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
      const deferred = new Set(deferrable.rows.map((r) => r.deferrable_index as string));
      const refused = arbiters.filter((a) => deferred.has(a));
      if (refused.length > 0) {
        return {
          status: 'fail',
          detail:
            `planned with arbiter ${refused.join(', ')}, which is DEFERRABLE: every INSERT … ON CONFLICT then fails ` +
            '(ON CONFLICT does not support deferrable unique constraints as arbiters)',
          remedy: remedyText(
            [],
            [
              `${createUniqueIndexSql(env)}   -- unless index.user-id-unique is ok`,
              ...refused.map((name) => `ALTER TABLE ${tableRef(env)} DROP CONSTRAINT ${quoteIdent(name)};`),
            ],
            'replace the deferrable constraint by an immediate unique index (check first that nothing relies on deferring it):',
          ),
        };
      }
      return { status: 'ok', detail: `planned; arbiter index: ${arbiters.join(', ') || '(none shown)'}` };
    } catch (err) {
      const c = classifyError(err);
      if (c.sqlstate === '42P10') {
        return {
          status: 'fail',
          detail: '42P10: no unique index matches ON CONFLICT (user_id), so every upsert fails (the incident)',
        };
      }
      if (c.sqlstate === '42501') {
        return { status: 'skipped', detail: 'cannot plan it without INSERT and UPDATE on the table (see privileges)' };
      }
      throw err;
    }
  },
  remedy: uniqueIndexRemedy,
};
