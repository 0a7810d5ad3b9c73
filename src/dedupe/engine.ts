/**
 * The dedupe run: plan (which user_ids have duplicates) → batches (one transaction each: lock the
 * planned rows, then move all but the kept one per user_id into the archive) → passes until no
 * duplicate is left (or the application keeps rows busy) → counts and a row-by-row check.
 */
import type { Client } from 'pg';
import { classifyError } from '../db/classify.js';
import { retry, sleep, type RetryPolicy } from '../db/retry.js';
import { FailError } from '../errors.js';
import { tsmCommand } from '../report/shell.js';
import { ARCHIVE, TABLE, columnsOf, describeTable, ensureArchive, type TableShape } from './shape.js';
import {
  LOCK_HOLDER_SQL,
  TRY_LOCK_SQL,
  UNLOCK_SQL,
  archiveCountSql,
  countsSql,
  lockSql,
  moveSql,
  planSql,
  verifySql,
  type KeepPolicy,
} from './sql.js';

export type { KeepPolicy };

export interface DedupeOptions {
  schema: string;
  keep: KeepPolicy;
  /** user_ids per transaction. */
  batchSize: number;
  dryRun: boolean;
  /** How many plan → move rounds at most (rows busy in the application are retried in the next). */
  maxPasses?: number;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /**
   * Stops the run between batches (each batch is one transaction: committed or not at all) and
   * cuts retry pauses short; the run then throws a FailError saying what was moved.
   */
  signal?: AbortSignal;
}

/** One duplicated user_id as planned: ids[0] is the row that would be kept. */
export interface PlannedUser {
  user_id: string;
  rows: number;
  kept_id: string;
  archive_ids: string[];
}

export interface MovedUser {
  user_id: string;
  kept_id: string;
  archived: number;
}

export interface Counts {
  /** Rows in telegram_sessions. */
  rows: number;
  /** user_ids with more than one row. */
  duplicate_users: number;
  /** Rows beyond the first per duplicated user_id (what dedupe would archive). */
  excess_rows: number;
  /** Rows in the archive table (0 when it does not exist yet). */
  archive_rows: number;
}

export interface Conservation {
  /** rows before = rows after + rows archived. */
  holds: boolean;
  rows_before: number;
  rows_after: number;
  rows_archived: number;
  /** rows_after + rows_archived − rows_before: rows others added (+) or removed (−) meanwhile. */
  difference: number;
  /** The archive grew by exactly the rows archived. */
  archive_grew_by: number;
}

export interface Verification {
  /** Every moved row is in the archive exactly once and no longer in the table. */
  ok: boolean;
  moved: number;
  in_table: number;
  in_archive: number;
  distinct_in_archive: number;
}

export interface DedupeReport {
  schema: string;
  table: string;
  archive: string;
  dry_run: boolean;
  keep: KeepPolicy;
  batch_size: number;
  before: Counts;
  /** --dry-run: every duplicated user_id, the row that would be kept, the ids that would move. */
  would_move: PlannedUser[] | null;
  after: Counts | null;
  /** Rows moved into the archive by this run. */
  archived: number;
  batches: number;
  passes: number;
  /** Planned rows skipped because the application held a lock on them at that moment (retried). */
  skipped_busy: number;
  moved: MovedUser[];
  /** DDL run on the archive table (created, or columns added). */
  archive_ddl: string[];
  conservation: Conservation | null;
  verification: Verification | null;
  duplicates_remaining: number;
  ok: boolean;
}

const DEFAULT_PASSES = 5;
/** A batch that hit a lock timeout, a deadlock or a serialization failure: 5 attempts, 100 ms … 800 ms apart. */
const BATCH_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 800, jitter: 'none' };

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

interface PlanRow {
  user_id: string;
  rows: number;
  ids: string[];
}

async function fetchPlan(client: Client, shape: TableShape, keep: KeepPolicy): Promise<PlanRow[]> {
  return (await client.query<PlanRow>(planSql(shape, keep))).rows;
}

async function archiveRows(client: Client, shape: TableShape): Promise<number> {
  if ((await columnsOf(client, shape.schema, ARCHIVE)).length === 0) return 0;
  return Number((await client.query<{ rows: string }>(archiveCountSql(shape))).rows[0]!.rows);
}

/** Counts, the archive's size and (when asked) the plan, from one snapshot. */
async function snapshot(client: Client, shape: TableShape, keep: KeepPolicy, withPlan: boolean): Promise<{ counts: Counts; plan: PlanRow[] }> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const c = (await client.query<{ rows: string; duplicate_users: string; excess_rows: string }>(countsSql(shape))).rows[0]!;
    const archive_rows = await archiveRows(client, shape);
    const plan = withPlan && Number(c.duplicate_users) > 0 ? await fetchPlan(client, shape, keep) : [];
    await client.query('COMMIT');
    return {
      counts: { rows: Number(c.rows), duplicate_users: Number(c.duplicate_users), excess_rows: Number(c.excess_rows), archive_rows },
      plan,
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

interface BatchOutcome {
  moved: { id: string; user_id: string; kept_id: string }[];
  planned: number;
  locked: number;
}

/** One batch = one transaction: lock (SKIP LOCKED), then move in one statement; retried when retryable. */
async function moveBatch(client: Client, shape: TableShape, keep: KeepPolicy, ids: string[], signal: AbortSignal | undefined): Promise<BatchOutcome> {
  const lock = lockSql(shape);
  const move = moveSql(shape, keep);
  return retry(
    async () => {
      try {
        await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
        const locked = (await client.query<{ id: string }>(lock, [ids])).rows.map((r) => r.id);
        const moved = locked.length < 2 ? [] : (await client.query<BatchOutcome['moved'][number]>(move, [locked])).rows;
        await client.query('COMMIT');
        return { moved, planned: ids.length, locked: locked.length };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    },
    {
      policy: BATCH_RETRY,
      retryOn: (err) => {
        const c = classifyError(err);
        return c.retryable && c.code !== 'connection_error';
      },
      ...(signal ? { signal } : {}),
    },
  );
}

/** Between two batches: stop when the run was aborted (nothing is half-moved at that point). */
function stopIfAborted(signal: AbortSignal | undefined, report: DedupeReport, movedThisPass = 0): void {
  if (!signal?.aborted) return;
  const moved = report.archived + movedThisPass;
  throw new FailError(
    `dedupe stopped before batch ${report.batches + 1}: ${moved} row${moved === 1 ? '' : 's'} moved into ${ARCHIVE} so far; ` +
      `each batch is one transaction, so no row is half-moved; run ${tsmCommand(report.schema, 'dedupe')} again`,
  );
}

async function takeLock(client: Client, schema: string): Promise<void> {
  const { rows } = await client.query<{ locked: boolean }>(TRY_LOCK_SQL, [schema]);
  if (rows[0]?.locked) return;
  const holder = (await client.query<{ pid: number }>(LOCK_HOLDER_SQL, [schema])).rows[0];
  const who = holder ? ` (backend pid ${holder.pid})` : '';
  throw new FailError(`another tsm dedupe is running on schema ${schema}${who}: wait for it to finish, then run ${tsmCommand(schema, 'dedupe')} again`);
}

/**
 * Runs dedupe on `client`, a connection of the caller's: it is handed back outside any
 * transaction, with its own lock_timeout. Throws FailError for a refusal (another dedupe running,
 * an unusable table, an aborted run) and the driver's error for a database failure.
 */
export async function dedupe(client: Client, opts: DedupeOptions): Promise<DedupeReport> {
  const was = (await client.query<{ v: string }>(`SELECT current_setting('lock_timeout') AS v`)).rows[0]!.v;
  // A DDL or LOCK TABLE held by someone else must not make us (and everyone queued behind us) wait long.
  await client.query(`SET lock_timeout = '5s'`);
  try {
    return await run(client, opts);
  } finally {
    await client.query(`SELECT set_config('lock_timeout', $1, false)`, [was]).catch(() => {});
  }
}

async function run(client: Client, opts: DedupeOptions): Promise<DedupeReport> {
  const log = opts.log ?? (() => {});
  const { keep, batchSize } = opts;
  const shape = await describeTable(client, opts.schema);
  const report: DedupeReport = {
    schema: opts.schema,
    table: TABLE,
    archive: ARCHIVE,
    dry_run: opts.dryRun,
    keep,
    batch_size: batchSize,
    before: { rows: 0, duplicate_users: 0, excess_rows: 0, archive_rows: 0 },
    would_move: null,
    after: null,
    archived: 0,
    batches: 0,
    passes: 0,
    skipped_busy: 0,
    moved: [],
    archive_ddl: [],
    conservation: null,
    verification: null,
    duplicates_remaining: 0,
    ok: false,
  };

  if (opts.dryRun) {
    const { counts, plan } = await snapshot(client, shape, keep, true);
    report.before = counts;
    report.would_move = plan.map((p) => ({ user_id: p.user_id, rows: p.rows, kept_id: p.ids[0]!, archive_ids: p.ids.slice(1) }));
    report.duplicates_remaining = counts.duplicate_users;
    report.ok = counts.duplicate_users === 0;
    return report;
  }

  await takeLock(client, opts.schema);
  try {
    report.archive_ddl = await ensureArchive(client, shape);
    const start = (await client.query<{ now: string }>('SELECT now()::text AS now')).rows[0]!.now;
    const first = await snapshot(client, shape, keep, true);
    report.before = first.counts;
    let last: Counts | null = null;
    let plan = first.plan;
    const movedIds: string[] = [];
    const perUser = new Map<string, MovedUser>();
    const maxPasses = opts.maxPasses ?? DEFAULT_PASSES;
    let movedLastPass = -1;
    while (plan.length > 0 && report.passes < maxPasses) {
      report.passes++;
      // Everything left was busy last time: give the application a moment to commit.
      if (movedLastPass === 0) await sleep(100 * report.passes, opts.signal);
      stopIfAborted(opts.signal, report);
      const batches = chunks(plan, batchSize);
      if (batches.length > 1 || report.passes > 1) {
        log(`dedupe: pass ${report.passes}: ${plan.length} user_ids with duplicates, ${batches.length} batch(es) of up to ${batchSize}`);
      }
      let movedThisPass = 0;
      let lastLog = Date.now();
      for (const [i, batch] of batches.entries()) {
        stopIfAborted(opts.signal, report, movedThisPass);
        const out = await moveBatch(client, shape, keep, batch.flatMap((p) => p.ids), opts.signal);
        report.batches++;
        report.skipped_busy += out.planned - out.locked;
        movedThisPass += out.moved.length;
        for (const m of out.moved) {
          movedIds.push(m.id);
          const u = perUser.get(m.user_id) ?? { user_id: m.user_id, kept_id: m.kept_id, archived: 0 };
          u.kept_id = m.kept_id;
          u.archived++;
          perUser.set(m.user_id, u);
        }
        if (batches.length > 1 && (Date.now() - lastLog > 1000 || i === batches.length - 1)) {
          lastLog = Date.now();
          log(`dedupe: batch ${i + 1}/${batches.length}: ${report.archived + movedThisPass} rows archived so far`);
        }
      }
      report.archived += movedThisPass;
      movedLastPass = movedThisPass;
      // Cheap counts first (no plan): usually nothing is left and they are the "after" counts.
      last = (await snapshot(client, shape, keep, false)).counts;
      plan = last.duplicate_users > 0 && report.passes < maxPasses ? await fetchPlan(client, shape, keep) : [];
    }
    report.moved = [...perUser.values()].sort((a, b) => a.user_id.localeCompare(b.user_id));

    const a = last ?? (await snapshot(client, shape, keep, false)).counts;
    report.after = a;
    report.duplicates_remaining = a.duplicate_users;
    const b = report.before;
    const difference = a.rows + report.archived - b.rows;
    report.conservation = {
      holds: difference === 0,
      rows_before: b.rows,
      rows_after: a.rows,
      rows_archived: report.archived,
      difference,
      archive_grew_by: a.archive_rows - b.archive_rows,
    };
    const v = (await client.query<{ in_table: string; in_archive: string; distinct_in_archive: string }>(verifySql(shape), [movedIds, start])).rows[0]!;
    const verification: Verification = {
      ok: false,
      moved: movedIds.length,
      in_table: Number(v.in_table),
      in_archive: Number(v.in_archive),
      distinct_in_archive: Number(v.distinct_in_archive),
    };
    verification.ok = verification.in_table === 0 && verification.in_archive === movedIds.length && verification.distinct_in_archive === movedIds.length;
    report.verification = verification;
    report.ok = verification.ok && report.duplicates_remaining === 0;
    return report;
  } finally {
    await client.query(UNLOCK_SQL, [opts.schema]).catch(() => {});
  }
}
