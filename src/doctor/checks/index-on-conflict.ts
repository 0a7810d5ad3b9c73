import type { Client } from 'pg';
import { classifyError } from '../../db/classify.js';
import { inReadOnlyTransaction, readOnlyText } from '../readonly.js';
import type { CustomCheck, DoctorEnv } from '../types.js';
import { TABLE, remedyText, sqlName, tableRef } from '../util.js';
import { createUniqueIndexSql, uniqueIndexRemedy } from './index-user-id-unique.js';

/** The statement applications run, planned (EXPLAIN without ANALYZE), never executed. */
function probeSql(env: DoctorEnv): string {
  return (
    `EXPLAIN (COSTS OFF) INSERT INTO ${tableRef(env)} (user_id) VALUES (NULL) ` +
    `ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE SET user_id = EXCLUDED.user_id`
  );
}

/** One row per DEFERRABLE index of the table: the planner accepts one as arbiter, execution refuses it. */
export interface DeferrableRow {
  deferrable_index: string;
}

const DEFERRABLE_SQL = `SELECT ic.relname::text AS deferrable_index
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c     ON c.oid = i.indrelid
  JOIN pg_catalog.pg_class ic    ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1::text AND c.relname = '${TABLE}' AND NOT i.indimmediate`;

export const indexOnConflict: CustomCheck<DeferrableRow> = {
  id: 'index.on-conflict',
  title: 'INSERT … ON CONFLICT (user_id) can be planned',
  severity: 'fail',
  kind: 'custom',
  requires: ['table', 'user_id'],
  looksAt:
    'Asks the planner itself: EXPLAIN (without ANALYZE, so nothing runs) of INSERT … ON CONFLICT (user_id) ' +
    'WHERE user_id IS NOT NULL DO UPDATE, inside a READ ONLY transaction that is rolled back (it works on a hot ' +
    'standby and through a transaction-mode pooler). Reports the arbiter index the planner picks, and fails ' +
    'when it is DEFERRABLE (the planner accepts such an index, execution refuses it).',
  why:
    'This is the statement that failed in the incident: with no unique index the planner can use as ' +
    'arbiter, PostgreSQL raises SQLSTATE 42P10 and every save fails. Catalog checks can miss subtle ' +
    'mismatches (collation, operator class, predicate); the planner cannot.',
  example: {
    bad:
      'INSERT INTO public.telegram_sessions (tenant_id, user_id) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE …;\n' +
      '-- ERROR: there is no unique or exclusion constraint matching the ON CONFLICT specification (42P10)',
    good:
      'CREATE UNIQUE INDEX CONCURRENTLY telegram_sessions_user_id_unique ON public.telegram_sessions (user_id) WHERE user_id IS NOT NULL;\n' +
      'INSERT INTO public.telegram_sessions (tenant_id, user_id) VALUES ($1, $2) ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE …;',
  },
  catalogSql: DEFERRABLE_SQL,
  sql: (env) => `${readOnlyText(probeSql(env))}\n-- and, with the catalog checks ($1 = the schema):\n${DEFERRABLE_SQL};`,
  async run(client: Client, env: DoctorEnv, facts, deferrable, earlier) {
    try {
      const [explained] = await inReadOnlyTransaction(client, probeSql(env));
      const plan = explained!.rows.map((r) => String(Object.values(r)[0]));
      const line = plan.map((l) => /Conflict Arbiter Indexes:\s*(.+)$/.exec(l)?.[1]).find((x) => x);
      const arbiters = (line ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
      const deferred = new Set(deferrable.map((r) => r.deferrable_index));
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
              ...refused.map((name) => `ALTER TABLE ${tableRef(env)} DROP CONSTRAINT ${sqlName(name)};`),
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
          // The fix is index.user-id-unique's (which knows an unfinished index, a partition key, …).
          remedy: earlier.get('index.user-id-unique')?.remedy ?? uniqueIndexRemedy(env, facts),
        };
      }
      if (c.sqlstate === '42501') {
        return { status: 'skipped', detail: 'cannot plan it without INSERT and UPDATE on the table (see privileges)' };
      }
      throw err;
    }
  },
  remedy: (env) => uniqueIndexRemedy(env),
};
