/**
 * The shape of a doctor check: its identity, what it looks at and why (for --explain), the SQL it
 * runs, how it turns rows into a status, and the remedy for a problem.
 */
import type { Client } from 'pg';
import type { Status } from '../report/status.js';

export type { Status };
export type Severity = 'fail' | 'warn';

/** What every check is run against. */
export interface DoctorEnv {
  /** The schema holding telegram_sessions (unquoted). */
  readonly schema: string;
  /** `--min-session-length`: the smallest acceptable varchar(n) for a session column. */
  readonly minSessionLength: number;
}

/** What the `table` check found; other checks declare which of these they need. */
export interface Facts {
  readonly schemaExists: boolean;
  readonly tableExists: boolean;
  /** Column names of the table (empty when it is absent). */
  readonly columns: readonly string[];
}

/** A check is `skipped` (not run) unless its requirements hold. */
export type Requirement = 'table' | 'user_id';

/** One check's verdict. `remedy` overrides the check's generic remedy for this specific problem. */
export interface Outcome {
  status: Status;
  detail: string;
  remedy?: string;
}

/**
 * A row as a check's SQL returns it: the runner aggregates each query to JSON on the server, so
 * values are JSON values (text, numbers, booleans, arrays, null). Every check declares its own row
 * type (the columns its SQL selects); this untyped form is the default for checks that do not.
 */
export type Row = Record<string, unknown>;

interface BaseCheck {
  readonly id: string;
  readonly title: string;
  /** The status when the check is not ok. */
  readonly severity: Severity;
  /** --explain: what the check looks at. */
  readonly looksAt: string;
  /** --explain: why it matters. */
  readonly why: string;
  readonly requires: readonly Requirement[];
  /** The generic remedy: a tsm command and/or copy-paste SQL. */
  remedy(env: DoctorEnv): string;
}

/**
 * A catalog query. `sql` uses `$1::text` for the schema and nothing else, so the runner can send
 * every catalog check in one statement (one round trip); it never references the table directly,
 * so it runs (and returns no rows) when the table is absent.
 */
export interface CatalogCheck<R extends object = Row> extends BaseCheck {
  readonly kind: 'catalog';
  readonly sql: string;
  /** `rows`: what `sql` returned, typed as the columns it selects. */
  evaluate(rows: R[], env: DoctorEnv, facts: Facts): Outcome;
}

/**
 * A query over the table's rows (a scan). No parameters: the table is named in the SQL, so it only
 * runs when the table exists. Data checks are sent together in one read-only transaction.
 */
export interface DataCheck<R extends object = Row> extends BaseCheck {
  readonly kind: 'data';
  sql(env: DoctorEnv): string;
  /** `rows`: what `sql(env)` returned, typed as the columns it selects. */
  evaluate(rows: R[], env: DoctorEnv): Outcome;
  /** A verdict from earlier checks that makes the scan unnecessary (null: scan). */
  settledBy?(earlier: ReadonlyMap<string, Outcome>, env: DoctorEnv): Outcome | null;
}

/** Anything else (a planner probe, the migrations table): runs its own queries. */
export interface CustomCheck extends BaseCheck {
  readonly kind: 'custom';
  /** What it runs, as shown by --explain. */
  sql(env: DoctorEnv): string;
  run(client: Client, env: DoctorEnv): Promise<Outcome>;
}

/** Any check, whatever its row type (the registry and the runner see them like this). */
export type Check = CatalogCheck<object> | DataCheck<object> | CustomCheck;

/** One line of the report (and of the JSON document). */
export interface CheckResult {
  id: string;
  title: string;
  status: Status;
  severity: Severity;
  detail: string;
  /** The remedy when the status is warn or fail; null otherwise. */
  remedy: string | null;
}

export interface Summary {
  ok: number;
  warn: number;
  fail: number;
  skipped: number;
}

/** The JSON document of `tsm doctor --json`. */
export interface DoctorReport {
  database: string;
  server_version: string | null;
  schema: string;
  checks: CheckResult[];
  summary: Summary;
}
