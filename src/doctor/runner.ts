/**
 * Runs the checks in a bounded number of round trips, whatever the size of the database:
 *   1. every catalog check in ONE statement (each check's SQL is a sub-select, aggregated to JSON);
 *   2. the data checks that still need a scan, together, in ONE read-only transaction;
 *   3. the ON CONFLICT planner probe, in ONE read-only transaction (plus a ROLLBACK when it fails);
 *   4. the migrations check (`migrationStatus`, the same queries as `tsm migrate status`).
 * If a batch fails, its checks are retried one by one so the failure is pinned on the right check.
 */
import type { Client } from 'pg';
import { classifyError } from '../db/classify.js';
import { ConnectError } from '../errors.js';
import type { ConnectionRow } from './checks/connection.js';
import { factsFrom, type TableRow } from './checks/table.js';
import { inReadOnlyTransaction } from './readonly.js';
import { CHECKS } from './registry.js';
import type { CatalogCheck, Check, CheckResult, DataCheck, DoctorEnv, Facts, Outcome, Requirement } from './types.js';

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
type CatalogAny = CatalogCheck<object>;
type DataAny = DataCheck<object>;

/** The `c<i>` columns of a combined query. */
type Combined = Record<string, object[]>;

const aggregate = (sql: string, i: number): string =>
  `(SELECT coalesce(json_agg(r), '[]'::json) FROM (\n${sql}\n) r) AS c${i}`;

function combined(sqls: string[]): string {
  return 'SELECT ' + sqls.map(aggregate).join(',\n');
}

async function catalogRows(client: Client, checks: CatalogAny[], env: DoctorEnv): Promise<Map<string, Rows>> {
  const out = new Map<string, Rows>();
  const params = (sql: string): string[] => (/\$1\b/.test(sql) ? [env.schema] : []);
  try {
    const text = combined(checks.map((c) => c.sql));
    const res = await client.query<Combined>(text, params(text));
    checks.forEach((c, i) => out.set(c.id, res.rows[0]![`c${i}`]!));
  } catch (err) {
    rethrowIfConnection(err);
    for (const c of checks) {
      try {
        const text = combined([c.sql]);
        out.set(c.id, (await client.query<Combined>(text, params(text))).rows[0]!.c0!);
      } catch (e) {
        rethrowIfConnection(e);
        out.set(c.id, { error: e });
      }
    }
  }
  return out;
}

async function dataRows(client: Client, checks: DataAny[], env: DoctorEnv): Promise<Map<string, Rows>> {
  const out = new Map<string, Rows>();
  if (checks.length === 0) return out;
  try {
    const [res] = await inReadOnlyTransaction<Combined>(client, combined(checks.map((c) => c.sql(env))));
    checks.forEach((c, i) => out.set(c.id, res!.rows[0]![`c${i}`]!));
  } catch (err) {
    rethrowIfConnection(err);
    for (const c of checks) {
      try {
        const [res] = await inReadOnlyTransaction<Combined>(client, combined([c.sql(env)]));
        out.set(c.id, res!.rows[0]!.c0!);
      } catch (e) {
        rethrowIfConnection(e);
        out.set(c.id, { error: e });
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
  return { status: check.severity, detail: `could not check: ${message}${c.sqlstate ? ` [${c.sqlstate}]` : ''}` };
}

function evaluateRows(check: Check, rows: Rows | undefined, run: (rows: object[]) => Outcome): Outcome {
  if (rows === undefined) return { status: 'skipped', detail: 'not run' };
  if (!Array.isArray(rows)) return failedToRun(check, rows.error);
  return run(rows);
}

export async function runChecks(client: Client, env: DoctorEnv, checks: readonly Check[] = CHECKS): Promise<RunResult> {
  const outcomes = new Map<string, Outcome>();
  const catalog = checks.filter((c): c is CatalogAny => c.kind === 'catalog');
  const rows = await catalogRows(client, catalog, env);

  const tableRows = rows.get('table');
  // The table check's own rows (its SQL selects TableRow's columns).
  const facts = factsFrom(Array.isArray(tableRows) ? (tableRows as TableRow[]) : []);

  // 1. catalog checks, in order
  for (const c of catalog) {
    const why = unmet(c, facts);
    outcomes.set(c.id, why ? { status: 'skipped', detail: why } : evaluateRows(c, rows.get(c.id), (r) => c.evaluate(r, env, facts)));
  }

  // 2. data checks: settled by earlier verdicts where possible, the rest scanned together
  const data = checks.filter((c): c is DataAny => c.kind === 'data');
  const toScan: DataAny[] = [];
  for (const c of data) {
    const why = unmet(c, facts);
    const settled = why ? { status: 'skipped' as const, detail: why } : (c.settledBy?.(outcomes, env) ?? null);
    if (settled) outcomes.set(c.id, settled);
    else toScan.push(c);
  }
  const scanned = await dataRows(client, toScan, env);
  for (const c of toScan) outcomes.set(c.id, evaluateRows(c, scanned.get(c.id), (r) => c.evaluate(r, env)));

  // 3. custom checks (planner probe, migrations), one after the other on the same connection
  for (const c of checks) {
    if (c.kind !== 'custom') continue;
    const why = unmet(c, facts);
    if (why) {
      outcomes.set(c.id, { status: 'skipped', detail: why });
      continue;
    }
    try {
      outcomes.set(c.id, await c.run(client, env));
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
    };
  });
  const conn = rows.get('connection');
  const first = Array.isArray(conn) ? (conn[0] as Partial<ConnectionRow> | undefined) : undefined;
  const serverVersion = first?.server_version !== undefined ? String(first.server_version) : null;
  return { results, serverVersion };
}
