/**
 * The shape of a doctor check: its identity, what it looks at and why (for --explain and
 * docs/checks.md), the SQL it runs, how it turns rows into a status, and the remedy for a problem.
 */
import type { Client } from 'pg';
import type { MigrationStatus } from '../migrate/status.js';
import type { Status } from '../report/status.js';

export type { Status };
export type Severity = 'fail' | 'warn';

/**
 * How data checks (the ones that read rows) bound their cost:
 * - `budget` (default): exact when the table's planner estimate is at most `maxExactRows` rows,
 *   else the planner's estimate (no scan);
 * - `exact`: always exact (`--exact`);
 * - `estimate`: never scan, statistics only (`--estimate`).
 * An exact scan runs with `statement_timeout = timeoutMs` (0: none); out of time it says `unknown`.
 */
export type DataMode = 'budget' | 'exact' | 'estimate';

export interface DataBudget {
  readonly mode: DataMode;
  readonly maxExactRows: number;
  /** Milliseconds; 0 = no limit. */
  readonly timeoutMs: number;
}

export const DEFAULT_DATA_BUDGET: DataBudget = { mode: 'budget', maxExactRows: 1_000_000, timeoutMs: 10_000 };

/** What every check is run against. */
export interface DoctorEnv {
  /** The schema holding telegram_sessions (unquoted). */
  readonly schema: string;
  /** `--min-session-length`: the smallest acceptable varchar(n) for a session column. */
  readonly minSessionLength: number;
  /** Data checks' budget; DEFAULT_DATA_BUDGET when absent. */
  readonly data?: DataBudget;
}

/** One partition of telegram_sessions (any level of a partition tree). */
export interface Partition {
  readonly schema: string;
  readonly name: string;
  /** The table it is a partition of (schema, name). */
  readonly parentSchema: string;
  readonly parentName: string;
  /** 1 for a partition of telegram_sessions, 2 for a partition of a partition, … */
  readonly level: number;
  /** Its own partition key when it is itself partitioned (`RANGE (created_at)`), else null. */
  readonly key: string | null;
  /** Its partition-key columns (null for an expression) when it is itself partitioned. */
  readonly keyColumns: readonly (string | null)[] | null;
  /** pg_class.reltuples, or the statistics' live tuples when never vacuumed or analyzed. */
  readonly rows: number;
}

/** What the `table` check found; other checks declare which of these they need. */
export interface Facts {
  readonly schemaExists: boolean;
  readonly tableExists: boolean;
  /** Column names of the table (empty when it is absent). */
  readonly columns: readonly string[];
  /** The table's own partition key (`HASH (user_id)`) and its columns (null: an expression), or null when not partitioned. */
  readonly partitioning: { readonly key: string; readonly columns: readonly (string | null)[] } | null;
  /** Every partition, every level, parents before their children. */
  readonly partitions: readonly Partition[];
  /**
   * The planner's row estimate for the whole table (sum over leaf partitions): reltuples, or the
   * statistics' live tuples for a table never vacuumed or analyzed.
   */
  readonly estimatedRows: number;
  /**
   * tsm's migration history against the shipped migrations (read before the checks are judged),
   * or null when it could not be read.
   */
  readonly migrations: MigrationStatus | null;
}

/** A check is `skipped` (not run) unless its requirements hold. */
export type Requirement = 'table' | 'user_id';

/** One check's verdict. `remedy` overrides the check's generic remedy for this specific problem. */
export interface Outcome {
  status: Status;
  detail: string;
  remedy?: string;
  /** False when the verdict rests on the planner's estimate or is unknown (data checks); true otherwise. */
  exact?: boolean;
}

/**
 * A row as a check's SQL returns it: the runner aggregates each query to JSON on the server, so
 * values are JSON values (text, numbers, booleans, arrays, null). Every check declares its own row
 * type (the columns its SQL selects); this untyped form is the default for checks that do not.
 */
export type Row = Record<string, unknown>;

/** Copy-paste SQL of a bad state and of the good one, for docs/checks.md and --explain. */
export interface Example {
  readonly bad: string;
  readonly good: string;
}

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
  /** --explain and docs/checks.md: a bad state and the good one, as SQL (schema public). */
  readonly example: Example;
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

/** The exact query a data check runs for a table, and the planner settings that keep it on its path. */
export interface ExactQuery {
  /** What it reads: `index-only` (an index on user_id, or the partial unique index and a full index) or `heap`. */
  readonly path: 'index-only' | 'heap';
  /** `SET LOCAL` settings for its read-only transaction (e.g. enable_seqscan = off on an index path). */
  readonly settings: Readonly<Record<string, string>>;
  readonly sql: string;
}

/**
 * A query over the table's rows, bounded (DataBudget):
 * - `planSql` (catalog, `$1::text` = the schema; sent with the catalog checks): the planner's
 *   statistics of every leaf and which indexes can answer the exact question without the heap;
 * - `exact(env, plan)`: the exact query for that plan, run alone in a read-only transaction with
 *   the budget's statement_timeout;
 * - `estimate(plan, env)`: the verdict from the statistics alone, or null without statistics.
 */
export interface DataCheck<R extends object = Row, P extends object = Row> extends BaseCheck {
  readonly kind: 'data';
  readonly planSql: string;
  exact(env: DoctorEnv, plan: P[]): ExactQuery;
  /** Every exact variant, for --explain and docs (schema from env). */
  exactVariants(env: DoctorEnv): { when: string; query: ExactQuery }[];
  /** `rows`: what the exact query returned, typed as the columns it selects. */
  evaluate(rows: R[], env: DoctorEnv): Outcome;
  estimate(plan: P[], env: DoctorEnv): Outcome | null;
  /** A verdict from earlier checks that makes the scan unnecessary (null: scan or estimate). */
  settledBy?(earlier: ReadonlyMap<string, Outcome>, env: DoctorEnv): Outcome | null;
}

/** Anything else (a planner probe, the server's state, the migrations table): runs its own queries. */
export interface CustomCheck<C extends object = Row> extends BaseCheck {
  readonly kind: 'custom';
  /** A catalog query (`$1::text` = the schema) sent with the catalog checks; its rows are handed to run(). */
  readonly catalogSql?: string;
  /** What it runs, as shown by --explain. */
  sql(env: DoctorEnv): string;
  /** `earlier`: the verdicts of the catalog and data checks (custom checks run last). */
  run(client: Client, env: DoctorEnv, facts: Facts, catalogRows: C[], earlier: ReadonlyMap<string, Outcome>): Promise<Outcome>;
}

/** Any check, whatever its row type (the registry and the runner see them like this). */
export type Check = CatalogCheck<object> | DataCheck<object, object> | CustomCheck<object>;

/** One line of the report (and of the JSON document). */
export interface CheckResult {
  id: string;
  title: string;
  status: Status;
  severity: Severity;
  detail: string;
  /** The remedy when the status is warn or fail; null otherwise. */
  remedy: string | null;
  /** False when the verdict is the planner's estimate (detail says "estimated") or unknown; true otherwise. */
  exact: boolean;
}

export interface Summary {
  ok: number;
  warn: number;
  fail: number;
  skipped: number;
}

/** The JSON document of `tsm doctor --json`. */
export interface DoctorReport {
  /** false when a check failed (the exit code is 1). */
  ok: boolean;
  database: string;
  server_version: string | null;
  schema: string;
  /** How data checks were bounded in this run. */
  data: { mode: DataMode; max_exact_rows: number; timeout_ms: number };
  checks: CheckResult[];
  summary: Summary;
  /** Seconds the checks took (connected). */
  duration_seconds: number;
}
