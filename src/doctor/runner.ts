/**
 * Runs the checks in a bounded number of round trips, and with a bounded cost, whatever the size
 * of the database:
 *   1. every catalog query in ONE statement (each check's SQL is a sub-select, aggregated to JSON):
 *      the catalog checks, the data checks' plans (planner statistics, usable indexes) and the
 *      catalog parts of the custom checks;
 *   2. the migration history (`migrationStatus`, the same queries as `tsm migrate status`): the
 *      index checks say whether `tsm migrate up` would rebuild the index;
 *   3. each data check that still needs rows: the planner's estimate above the budget (no query),
 *      else ONE read-only transaction with the budget's statement_timeout, on an index-only path
 *      where the indexes allow it; out of time it is `unknown` (warn), never `fail`;
 *   4. the custom checks (the ON CONFLICT planner probe, the server's state).
 * Every statement is read-only; each transaction is one simple-query message, so doctor runs the
 * same on a hot standby and through a transaction-mode pooler, and leaves no setting behind.
 * If the catalog statement fails, its parts are retried one by one so the failure is pinned on
 * the right check.
 */
import type { Client } from 'pg';
import { classifyError } from '../db/classify.js';
import { ConnectError } from '../errors.js';
import { historyState } from '../migrate/history.js';
import { migrationStatus, type MigrationStatus } from '../migrate/status.js';
import type { ConnectionRow } from './checks/connection.js';
import { factsFrom, type TableRow } from './checks/table.js';
import { LOCK_TIMEOUT, beginReadOnlyText, inReadOnlyTransaction } from './readonly.js';
import { CHECKS } from './registry.js';
import {
  DEFAULT_DATA_BUDGET,

  type Check,
  type CheckResult,
  type CustomCheck,
  type DataBudget,
  type DataCheck,
  type DoctorEnv,
  type Facts,
  type Outcome,
  type Requirement,
} from './types.js';
import { about, remedyText, tableRef } from './util.js';
import { tsmCommand } from '../report/shell.js';

export interface RunResult {
  results: CheckResult[];
  /** From the connection check; null if it could not run. */
  serverVersion: string | null;
}

/**
 * A check's rows as the server returned them (its query aggregated to JSON), or why it failed.
 * The check's own row type is what its SQL selects: the cast happens once, in evaluateRows.
 */
type Rows = object[] | { error: unknown };
type DataAny = DataCheck<object, object>;
type CustomAny = CustomCheck<object>;

/** The `c<i>` columns of a combined query. */
type Combined = Record<string, object[]>;

const aggregate = (sql: string, i: number): string => `(SELECT coalesce(json_agg(r), '[]'::json) FROM (\n${sql}\n) r) AS c${i}`;

function combined(sqls: string[]): string {
  return 'SELECT ' + sqls.map(aggregate).join(',\n');
}

/** One catalog query of the first round trip, under a key (`<check id>` or `<check id>#plan`). */
interface CatalogPart {
  key: string;
  sql: string;
}

function catalogParts(checks: readonly Check[]): CatalogPart[] {
  const parts: CatalogPart[] = [];
  for (const c of checks) {
    if (c.kind === 'catalog') parts.push({ key: c.id, sql: c.sql });
    else if (c.kind === 'data') parts.push({ key: `${c.id}#plan`, sql: c.planSql });
    else if (c.catalogSql !== undefined) parts.push({ key: `${c.id}#catalog`, sql: c.catalogSql });
  }
  return parts;
}

/**
 * A catalog query with the schema as a bind parameter, inside a READ ONLY transaction with doctor's
 * lock_timeout: a catalog function that needs a lock on the table (pg_get_indexdef does) gives up
 * after it instead of queueing behind a migration's ACCESS EXCLUSIVE lock.
 */
async function catalogQuery(client: Client, text: string, env: DoctorEnv): Promise<Combined> {
  await client.query(beginReadOnlyText());
  try {
    return (await client.query<Combined>(text, /\$1\b/.test(text) ? [env.schema] : [])).rows[0]!;
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
}

async function catalogRows(client: Client, parts: CatalogPart[], env: DoctorEnv): Promise<Map<string, Rows>> {
  const out = new Map<string, Rows>();
  // The same query asked by several checks (the data checks share their plan) runs once.
  const distinct = [...new Set(parts.map((p) => p.sql))];
  try {
    const row = await catalogQuery(client, combined(distinct), env);
    parts.forEach((p) => out.set(p.key, row[`c${distinct.indexOf(p.sql)}`]!));
  } catch (err) {
    rethrowIfConnection(err);
    for (const p of parts) {
      try {
        out.set(p.key, (await catalogQuery(client, combined([p.sql]), env)).c0!);
      } catch (e) {
        rethrowIfConnection(e);
        out.set(p.key, { error: e });
      }
    }
  }
  return out;
}

function rethrowIfConnection(err: unknown): void {
  const c = classifyError(err);
  if (c.code === 'connection_error') throw new ConnectError(`lost the connection while running doctor: ${c.message.split('\n')[0]}`);
}

const UNMET: Record<Requirement, string> = {
  table: 'needs the table (see table)',
  user_id: 'needs the user_id column (see columns.required)',
};

function unmet(check: Check, facts: Facts): string | null {
  for (const r of check.requires) {
    if (r === 'table' && !facts.tableExists) return UNMET.table;
    if (r === 'user_id' && !facts.columns.includes('user_id')) return UNMET.user_id;
  }
  return null;
}

/** A check whose own query failed: permission problems are skipped (privileges says why), others count. */
function failedToRun(check: Check, err: unknown): Outcome {
  rethrowIfConnection(err);
  const c = classifyError(err);
  const message = c.message.split('\n')[0];
  if (c.sqlstate === '42501') return { status: 'skipped', detail: `permission denied: ${message} (see privileges)` };
  // Out of time, or a lock held too long (a migration's DDL): nothing was found, so unknown (warn), never fail.
  if (c.sqlstate === '55P03') {
    return { status: 'warn', detail: `unknown: the table stayed locked (a migration or other DDL?) for the ${LOCK_TIMEOUT} doctor waits [55P03]`, exact: false };
  }
  if (c.sqlstate === '57014') return { status: 'warn', detail: `unknown: ${message} [57014]`, exact: false };
  // A data check that could not finish says unknown (warn), never fail: nothing was found.
  const status = check.kind === 'data' ? 'warn' : check.severity;
  const unknown = check.kind === 'data' ? 'unknown: ' : '';
  return { status, detail: `${unknown}could not check: ${message}${c.sqlstate ? ` [${c.sqlstate}]` : ''}`, exact: check.kind !== 'data' };
}

function evaluateRows(check: Check, rows: Rows | undefined, run: (rows: object[]) => Outcome): Outcome {
  if (rows === undefined) return { status: 'skipped', detail: 'not run' };
  if (!Array.isArray(rows)) return failedToRun(check, rows.error);
  return run(rows);
}

/** What to do about a data check that could not say: count without a time limit, or refresh the statistics. */
function unknownRemedy(env: DoctorEnv): string {
  return remedyText(
    [`${tsmCommand(env.schema, 'doctor --exact --data-timeout 0')}   (counts exactly, however long it takes; read-only)`],
    [`ANALYZE ${tableRef(env)};`],
    'or refresh the planner statistics the estimate comes from:',
  );
}

/** "10 s", "1.5 s", "200 ms" */
const seconds = (ms: number): string => (ms < 1000 ? `${ms} ms` : `${ms % 1000 === 0 ? ms / 1000 : (ms / 1000).toFixed(1)} s`);

/** The verdict of a data check that needs rows: estimate, exact, or unknown, within the budget. */
async function dataOutcome(client: Client, check: DataAny, plan: Rows | undefined, env: DoctorEnv, facts: Facts, budget: DataBudget): Promise<Outcome> {
  if (plan === undefined || !Array.isArray(plan)) {
    // Without the plan (its catalog query failed), count the old way: on the heap, within the time budget.
    return exactOutcome(client, check, [], env, budget, null);
  }
  const estimated = (): Outcome | null => check.estimate(plan, env);
  const useEstimate =
    budget.mode === 'estimate' || (budget.mode === 'budget' && facts.estimatedRows > budget.maxExactRows);
  if (useEstimate) {
    const e = estimated();
    if (e !== null) {
      const why = budget.mode === 'estimate' ? '--estimate' : `the table is above the exact-scan budget of ${about(budget.maxExactRows)} rows; --exact counts`;
      return { ...e, detail: `${e.detail}; ${why}`, exact: false };
    }
    return {
      status: 'warn',
      detail:
        `unknown: ${budget.mode === 'estimate' ? '--estimate, and' : `the table is above the exact-scan budget of ${about(budget.maxExactRows)} rows, and`} ` +
        'there are no planner statistics to estimate from (run ANALYZE on the table, or doctor --exact)',
      exact: false,
      remedy: unknownRemedy(env),
    };
  }
  return exactOutcome(client, check, plan, env, budget, estimated);
}

async function exactOutcome(
  client: Client,
  check: DataAny,
  plan: object[],
  env: DoctorEnv,
  budget: DataBudget,
  estimated: (() => Outcome | null) | null,
): Promise<Outcome> {
  const q = check.exact(env, plan);
  const settings = { ...q.settings, ...(budget.timeoutMs > 0 ? { statement_timeout: String(budget.timeoutMs) } : { statement_timeout: '0' }) };
  try {
    const [res] = await inReadOnlyTransaction<Combined>(client, combined([q.sql]), settings);
    return { ...check.evaluate(res!.rows[0]!.c0!, env), exact: true };
  } catch (err) {
    rethrowIfConnection(err);
    const c = classifyError(err);
    const hint = (): string => {
      const e = estimated?.() ?? null;
      return e === null ? '' : `; the planner's estimate: ${e.detail}`;
    };
    if (c.sqlstate === '57014') {
      return {
        status: 'warn',
        detail: `unknown: the exact ${q.path === 'heap' ? 'scan' : 'index-only scan'} did not finish within ${seconds(budget.timeoutMs)} (--data-timeout)${hint()}`,
        exact: false,
        remedy: unknownRemedy(env),
      };
    }
    if (c.sqlstate === '55P03') {
      return { status: 'warn', detail: `unknown: the table stayed locked (a migration or other DDL?) for the ${LOCK_TIMEOUT} doctor waits${hint()}`, exact: false, remedy: unknownRemedy(env) };
    }
    if (c.sqlstate === '40001') {
      return { status: 'warn', detail: `unknown: the scan was cancelled by a conflict with recovery (hot standby)${hint()}`, exact: false, remedy: unknownRemedy(env) };
    }
    return failedToRun(check, err);
  }
}

/** The history, or null when it cannot be read (the migrations check then reports why). */
async function readMigrations(client: Client, env: DoctorEnv): Promise<MigrationStatus | null> {
  try {
    // Without a history table there is nothing to compare: skip listing the shipped files (that loads
    // node-pg-migrate, a noticeable part of a doctor run).
    if (!(await historyState(client, env.schema)).table) return { table: false, migrations: [] };
    return await migrationStatus(client, env.schema);
  } catch (err) {
    rethrowIfConnection(err);
    return null;
  }
}

export async function runChecks(client: Client, env: DoctorEnv, checks: readonly Check[] = CHECKS): Promise<RunResult> {
  const budget = env.data ?? DEFAULT_DATA_BUDGET;
  const outcomes = new Map<string, Outcome>();
  const rows = await catalogRows(client, catalogParts(checks), env);

  const tableRows = rows.get('table');
  // The table check's own rows (its SQL selects TableRow's columns).
  const base = factsFrom(Array.isArray(tableRows) ? (tableRows as TableRow[]) : []);
  const facts: Facts = { ...base, migrations: await readMigrations(client, env) };

  // 1. catalog checks, in order
  for (const c of checks) {
    if (c.kind !== 'catalog') continue;
    const why = unmet(c, facts);
    outcomes.set(c.id, why ? { status: 'skipped', detail: why } : evaluateRows(c, rows.get(c.id), (r) => c.evaluate(r, env, facts)));
  }

  // 2. data checks: settled by earlier verdicts where possible, else estimated or counted within the budget
  for (const c of checks) {
    if (c.kind !== 'data') continue;
    const why = unmet(c, facts);
    if (why) {
      outcomes.set(c.id, { status: 'skipped', detail: why });
      continue;
    }
    const settled = c.settledBy?.(outcomes, env) ?? null;
    outcomes.set(c.id, settled ?? (await dataOutcome(client, c, rows.get(`${c.id}#plan`), env, facts, budget)));
  }

  // 3. custom checks (planner probe, server state, migrations), one after the other on the same connection
  for (const c of checks) {
    if (c.kind !== 'custom') continue;
    const custom = c as CustomAny;
    const why = unmet(c, facts);
    if (why) {
      outcomes.set(c.id, { status: 'skipped', detail: why });
      continue;
    }
    const own = custom.catalogSql === undefined ? [] : rows.get(`${c.id}#catalog`);
    if (own !== undefined && !Array.isArray(own)) {
      outcomes.set(c.id, failedToRun(c, own.error));
      continue;
    }
    try {
      outcomes.set(c.id, await custom.run(client, env, facts, own ?? [], outcomes));
    } catch (err) {
      outcomes.set(c.id, failedToRun(c, err));
    }
  }

  const results = checks.map((c): CheckResult => {
    const o = outcomes.get(c.id) ?? { status: 'skipped', detail: 'not run' };
    const problem = o.status === 'warn' || o.status === 'fail';
    return {
      id: c.id,
      title: c.title,
      status: o.status,
      severity: c.severity,
      detail: o.detail,
      remedy: problem ? (o.remedy ?? c.remedy(env)) : null,
      exact: o.exact ?? true,
    };
  });
  const conn = rows.get('connection');
  const first = Array.isArray(conn) ? (conn[0] as Partial<ConnectionRow> | undefined) : undefined;
  const serverVersion = first?.server_version !== undefined ? String(first.server_version) : null;
  return { results, serverVersion };
}
