/**
 * The dedupe run: check the server can be written → describe the table → make the archive fit
 * → plan (one scan: the duplicated user_ids' rows ranked, each row to move listed with its
 * address, its version and the row kept) → batches (one short transaction each, sized by time:
 * the next planned rows in physical order, moved into the archive if still in the planned
 * version) → a counting scan; another pass while duplicates are left (rows the application
 * changed or kept busy meanwhile) → counts and a row-by-row check.
 *
 * Nothing depends on the server session: every transaction sets what it needs with SET LOCAL,
 * and two runs keep out of each other's way with a transaction-level advisory lock taken by each
 * batch. So dedupe works the same on a direct connection and through PgBouncer in session or
 * transaction mode, and hands the caller's connection back as it was.
 */
import type { Client } from 'pg';
import { qualify, quoteIdent } from '../db/ident.js';
import { backoffDelay, sleep, type RetryPolicy } from '../db/retry.js';
import { readOnlyReason, readServerState } from '../db/server.js';
import { FailError } from '../errors.js';
import { tsmCommand } from '../report/shell.js';
import { READ_TX, Session, sqlstateOf, type TxSettings } from './session.js';
import { ARCHIVE, TABLE, archiveDdl, columnsOf, describeTable, type Leaf, type TableShape } from './shape.js';
import {
  LOCK_KEY_SQL,
  TABLE_BLOCKERS_SQL,
  archiveCountSql,
  checkSql,
  duplicatesSql,
  leftAtSql,
  SNAPSHOT_XMIN_SQL,
  leafRef,
  listSql,
  moveSkipLockedSql,
  moveSql,
  PLAIN_ID_TYPES,
  planSql,
  rowCountSql,
  lockSql,
  LOCK_HOLDERS_SQL,
  verifySql,
  inTableSql,
  type KeepPolicy,
} from './sql.js';

export type { KeepPolicy };

export interface DedupeOptions {
  schema: string;
  keep: KeepPolicy;
  /** A fixed number of rows to move per batch. Default: batches sized by time (`batchTargetMs`). */
  batchSize?: number;
  /** How long one batch transaction should take, in ms: its row locks are held that long. Default 50. */
  batchTargetMs?: number;
  /** How long a batch waits for its table locks (ROW EXCLUSIVE) before it is retried, in ms. Default 5000. */
  lockTimeoutMs?: number;
  dryRun: boolean;
  /** How many plan → move rounds at most (rows busy in the application are retried in the next). */
  maxPasses?: number;
  /** Lines worth keeping (a pass done, a retry); `warn` for what a user should see even without a terminal. */
  log?: (line: string, level?: 'info' | 'warn') => void;
  /** Called as the run goes (a scan starts, after every batch): for a progress line. */
  onProgress?: (p: DedupeProgress) => void;
  /**
   * Stops the run between batches (each batch is one transaction: committed or not at all) and
   * cuts retry pauses short; the run then throws a FailError saying what was moved.
   */
  signal?: AbortSignal;
}

export type DedupePhase = 'scanning' | 'moving' | 'verifying';

export interface DedupeProgress {
  phase: DedupePhase;
  pass: number;
  /** Rows this pass set out to move (the plan's excess rows). */
  planned: number;
  movedThisPass: number;
  /** Rows moved by this run so far. */
  moved: number;
  batches: number;
  /** Since the phase began. */
  elapsedMs: number;
  /**
   * The server process running the current long read (a scan, the check), only on a direct
   * connection (through a pooler that pid may serve someone else a moment later): a caller
   * that stops the run may cancel it with pg_cancel_backend.
   */
  backendPid: number | null;
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
  /** The archive grew by exactly the rows archived (more: another dedupe moved rows meanwhile). */
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
  /** The fixed rows per batch, or null when batches were sized by time. */
  batch_size: number | null;
  /** The time one batch was sized to take (ms). */
  batch_target_ms: number;
  /** The partitioning (e.g. `HASH (user_id)`), or null for a plain table. */
  partition_key: string | null;
  /** The columns that identify a moved row in the row-by-row check. */
  row_key: string[];
  before: Counts;
  /** --dry-run: every duplicated user_id, the row that would be kept, the ids that would move. */
  would_move: PlannedUser[] | null;
  after: Counts | null;
  /** Rows moved into the archive by this run. */
  archived: number;
  batches: number;
  /** The longest and the median batch transaction from its first row lock to COMMIT (ms): how long tsm held row locks. */
  longest_batch_ms: number;
  median_batch_ms: number;
  /** Batches that met a row the application held and were run again, skipping busy rows. */
  batches_retried: number;
  passes: number;
  /** Planned rows not moved in their pass (changed or busy in the application at that moment; the next pass looks again). */
  skipped_busy: number;
  moved: MovedUser[];
  /** DDL run on the archive table (created, or columns added). */
  archive_ddl: string[];
  conservation: Conservation | null;
  verification: Verification | null;
  duplicates_remaining: number;
  elapsed_ms: number;
  /** Where the time went (ms): the planning scans, the batches, the counting scans after each pass, the row-by-row check. */
  phases_ms: { plan: number; move: number; count: number; verify: number };
  ok: boolean;
}

const DEFAULT_PASSES = 5;
export const DEFAULT_BATCH_TARGET_MS = 50;
export const DEFAULT_LOCK_TIMEOUT_MS = 5000;
/** The longest a batch may wait for a row the application holds before it is redone skipping busy rows. */
const ROW_WAIT_MS = 50;
/** A batch statement that runs this long is stopped and its user_ids retried in smaller batches. */
const BATCH_STATEMENT_MS = 5000;
/** A batch's transaction: never idle for long (a frozen tsm, e.g. Ctrl-Z, must not keep row locks). */
const BATCH_IDLE_MS = 10_000;
/** A batch that failed on a lock timeout, a deadlock, a serialization failure or its statement timeout: 6 attempts, 50 ms … 800 ms apart. */
const BATCH_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 50, maxDelayMs: 800, jitter: 'equal' };
const MAX_ROWS_PER_BATCH = 50_000;
const FIRST_BATCH_ROWS = 200;

/** Batch sizes in rows: fixed, or by time (the cost per row measured, smoothed, and the next batch sized to the target). */
export class BatchSizer {
  private perRowMs: number | undefined;
  size: number;
  constructor(
    private readonly targetMs: number,
    private readonly fixed?: number,
  ) {
    this.size = fixed ?? FIRST_BATCH_ROWS;
  }
  observe(rows: number, ms: number): void {
    if (this.fixed !== undefined || rows <= 0) return;
    const cost = Math.max(ms, 0.05) / rows;
    this.perRowMs = this.perRowMs === undefined ? cost : 0.5 * this.perRowMs + 0.5 * cost;
    const want = Math.max(1, Math.floor(this.targetMs / this.perRowMs));
    // Move towards it, at most 4× up or down per batch (one slow or fast batch is not a trend).
    const lo = Math.max(1, Math.floor(this.size / 4));
    const hi = Math.min(MAX_ROWS_PER_BATCH, this.size * 4);
    this.size = Math.max(lo, Math.min(hi, want));
  }
  shrink(): void {
    this.size = Math.max(1, Math.floor(this.size / 2));
  }
}

/** One row to move, as a pass planned it: where it is, the version that was ranked, the row kept for its user_id. */
interface PlanRow {
  leaf: number;
  block: number;
  offset: number;
  xmin: string;
  kept: string;
}

interface Plan {
  rows: PlanRow[];
  /** Duplicated user_ids. */
  users: number;
  /** The xmin of the plan's snapshot (32-bit xid as text): rows written after the plan have an xmin at or after it. */
  snapshotXmin: string;
}

interface Scan {
  counts: Counts;
  plan: Plan;
}

type PlanChunk = { leaf: string; users: number; plan: string };

const PLANNED = /\((\d+),(\d+)\)(\d+):(\S+)/g;

/** The plan's texts, parsed and put in physical order: leaf, then block, then line pointer. */
function parsePlan(chunks: PlanChunk[], plainIds: boolean, snapshotXmin: string): Plan {
  const rows: PlanRow[] = [];
  let users = 0;
  for (const c of chunks) {
    users += c.users;
    const leaf = Number(c.leaf);
    for (const m of c.plan.matchAll(PLANNED)) {
      rows.push({ leaf, block: Number(m[1]), offset: Number(m[2]), xmin: m[3]!, kept: plainIds ? m[4]! : Buffer.from(m[4]!, 'hex').toString('utf8') });
    }
  }
  rows.sort((a, b) => a.leaf - b.leaf || a.block - b.block || a.offset - b.offset);
  return { rows, users, snapshotXmin };
}

/**
 * A text array parameter built directly (pg would escape every element): only for values that
 * never need quoting (digits, uuids) or are quoted here because they hold nothing to escape.
 */
function plainArray(values: readonly string[], quote = false): string {
  return quote ? `{"${values.join('","')}"}` : `{${values.join(',')}}`;
}

const plural = (n: number, one: string, many = one + 's'): string => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

/**
 * Runs dedupe on `client`, a connection of the caller's: it is handed back outside any
 * transaction with its settings untouched. Throws FailError for a refusal (a read-only server,
 * an unusable table, another dedupe holding the lock too long, an aborted run) and the driver's
 * error for a database failure (a connection lost because of a server timeout is reported as
 * the server's own error, naming it).
 */
export async function dedupe(client: Client, opts: DedupeOptions): Promise<DedupeReport> {
  const session = new Session(client);
  try {
    return await run(session, opts);
  } catch (err) {
    throw session.explain(err);
  } finally {
    session.dispose();
  }
}

async function archiveRows(session: Session, shape: TableShape): Promise<number> {
  if ((await columnsOf(session.client, shape.schema, ARCHIVE)).length === 0) return 0;
  return Number((await session.query<{ rows: string }>(archiveCountSql(shape))).rows[0]!.rows);
}

async function run(session: Session, opts: DedupeOptions): Promise<DedupeReport> {
  const started = Date.now();
  const log = opts.log ?? (() => {});
  const progress = opts.onProgress ?? (() => {});
  const { keep, signal } = opts;
  const targetMs = opts.batchTargetMs ?? DEFAULT_BATCH_TARGET_MS;
  const lockTimeoutMs = opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;

  // Before anything: a read-only server (a hot standby, default_transaction_read_only) is refused
  // up front with nothing done; --dry-run only reads and works there.
  const server = await readServerState(session.client);
  if (!opts.dryRun) {
    const why = readOnlyReason(server);
    if (why !== null) {
      throw new FailError(why, { code: 'read_only', data: { in_recovery: server.inRecovery, default_transaction_read_only: server.defaultReadOnly } });
    }
  }
  const direct = !server.proxied;
  const readSettings: TxSettings = { ...READ_TX, lockTimeoutMs };
  const shape = await session.transaction(readSettings, () => describeTable(session.client, opts.schema));

  const report: DedupeReport = {
    schema: opts.schema,
    table: TABLE,
    archive: ARCHIVE,
    dry_run: opts.dryRun,
    keep,
    batch_size: opts.batchSize ?? null,
    batch_target_ms: targetMs,
    partition_key: shape.partitionKey,
    row_key: shape.rowKey.map((c) => c.name),
    before: { rows: 0, duplicate_users: 0, excess_rows: 0, archive_rows: 0 },
    would_move: null,
    after: null,
    archived: 0,
    batches: 0,
    longest_batch_ms: 0,
    median_batch_ms: 0,
    batches_retried: 0,
    passes: 0,
    skipped_busy: 0,
    moved: [],
    archive_ddl: [],
    conservation: null,
    verification: null,
    duplicates_remaining: 0,
    elapsed_ms: 0,
    phases_ms: { plan: 0, move: 0, count: 0, verify: 0 },
    ok: false,
  };
  const timed = async <T>(phase: keyof DedupeReport['phases_ms'], fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      report.phases_ms[phase] += Math.round(performance.now() - t0);
    }
  };

  /** A long read in its own snapshot, announced (with the backend's pid on a direct connection) before it starts. */
  const readTx = async <T>(phase: DedupePhase, fn: () => Promise<T>, pass = report.passes): Promise<T> => {
    return session.transaction(
      readSettings,
      async ([pid]) => {
        const backendPid = direct ? ((pid?.rows[0] as { pid: number } | undefined)?.pid ?? null) : null;
        progress({ phase, pass, planned: 0, movedThisPass: 0, moved: report.archived, batches: report.batches, elapsedMs: 0, backendPid });
        return fn();
      },
      ['SELECT pg_catalog.pg_backend_pid() AS pid'],
    );
  };

  if (opts.dryRun) {
    const { rows, plan, archive } = await readTx('scanning', async () => ({
      rows: Number((await session.query<{ rows: string }>(rowCountSql(shape))).rows[0]!.rows),
      plan: (await session.query<{ user_id: string; rows: number; ids: string[] }>(listSql(shape, keep))).rows,
      archive: await archiveRows(session, shape),
    }));
    report.before = { rows, duplicate_users: plan.length, excess_rows: plan.reduce((s, p) => s + p.rows - 1, 0), archive_rows: archive };
    report.would_move = plan.map((p) => ({ user_id: p.user_id, rows: p.rows, kept_id: p.ids[0]!, archive_ids: p.ids.slice(1) }));
    report.duplicates_remaining = plan.length;
    report.ok = plan.length === 0;
    report.elapsed_ms = Date.now() - started;
    return report;
  }

  const plainIds = PLAIN_ID_TYPES.has(shape.idType);
  const lockKey = Number((await session.query<{ key: number }>(LOCK_KEY_SQL, [opts.schema])).rows[0]!.key);
  const writeTx: TxSettings = { readOnly: false, statementTimeoutMs: BATCH_STATEMENT_MS, lockTimeoutMs, idleInTransactionMs: BATCH_IDLE_MS };
  const batchTx: TxSettings = { ...writeTx, synchronousCommit: false };

  /**
   * Opens a writing transaction holding dedupe's advisory lock (transaction-level: it ends with
   * the transaction). While another dedupe's batch holds it, this one waits, at most lock_timeout:
   * waiters are served in turn, so two runs alternate batch by batch. (The wait keeps a snapshot,
   * which is harmless here: no session that runs CREATE INDEX CONCURRENTLY ever holds this lock.)
   */
  const beginLocked = async (extra: string[], settings = writeTx): Promise<void> => {
    await session.begin(settings, [lockSql(lockKey), ...extra]);
  };

  // The archive: created or widened in one transaction, under the lock (two runs never race on its DDL).
  report.archive_ddl = await (async () => {
    // No statement limit: adding an index or widening a column of a big archive takes as long as it takes (only the archive is locked).
    await beginLocked([], { ...writeTx, statementTimeoutMs: 0 });
    try {
      const ddl = await archiveDdl(session.client, shape);
      for (const sql of ddl) await session.query(sql);
      await session.commit();
      return ddl;
    } catch (err) {
      await session.rollback();
      throw session.explain(err);
    }
  })();
  const runStart = (await session.query<{ now: string }>('SELECT now()::text AS now')).rows[0]!.now;

  const first = await timed('plan', () => readTx('scanning', async (): Promise<Scan> => {
    const rows = Number((await session.query<{ rows: string }>(rowCountSql(shape))).rows[0]!.rows);
    const chunks = (await session.query<PlanChunk>(planSql(shape, keep))).rows;
    const archive_rows = await archiveRows(session, shape);
    const xmin = (await session.query<{ xmin: string }>(SNAPSHOT_XMIN_SQL)).rows[0]!.xmin;
    const plan = parsePlan(chunks, plainIds, xmin);
    return { counts: { rows, duplicate_users: plan.users, excess_rows: plan.rows.length, archive_rows }, plan };
  }, 1));
  report.before = first.counts;

  const keyValues: string[][] = shape.rowKey.map(() => []);
  const perUser = new Map<string, MovedUser>();
  const batchMs: number[] = [];
  const sizer = new BatchSizer(targetMs, opts.batchSize);
  const leaves = new Map<number, Leaf>(shape.leaves.map((l) => [l.oid, l]));

  const maxPasses = opts.maxPasses ?? DEFAULT_PASSES;
  let plan = first.plan;
  let last: Counts = first.counts;
  let movedLastPass = -1;
  /** user_ids of planned rows a pass did not move. */
  const leftUsers = new Set<string>();
  /** Rows in the table with an id this run moved, from the last counting scan. */
  let movedIdsInTable = 0;
  /** With a one-column key: the archive half of the row-by-row check, from the last check. */
  let lastArchiveCheck: { in_archive: string; distinct_in_archive: string } | null = null;

  const stopIfAborted = (): void => {
    if (!signal?.aborted) return;
    const moved = report.archived;
    throw new FailError(
      `dedupe stopped before batch ${report.batches + 1}: ` +
        (moved > 0
          ? `${plural(moved, 'row')} moved into ${ARCHIVE} so far; each batch is one transaction, so no row is half-moved; run ${tsmCommand(opts.schema, 'dedupe')} again`
          : `nothing was moved; run ${tsmCommand(opts.schema, 'dedupe')} again`),
      { code: 'stopped', data: { archived: moved } },
    );
  };

  while (plan.rows.length > 0 && report.passes < maxPasses) {
    report.passes++;
    const pass = report.passes;
    // Everything left was busy last time: give the application a moment to commit.
    if (movedLastPass === 0) await sleep(100 * pass, signal);
    stopIfAborted();
    const planned = plan.rows.length;
    if (pass > 1) log(`dedupe: pass ${pass}: ${plural(plan.users, 'user_id')} still duplicated (changed or busy while the last pass ran), ${plural(planned, 'row')} to move`, 'warn');
    const passStart = Date.now();
    const movedBefore = report.archived;
    const batchesBefore = report.batches;
    const rows = plan.rows;
    let i = 0;
    let attempts = 0;
    let skipLocked = false;
    while (i < rows.length) {
      stopIfAborted();
      // A batch: the next rows in physical order, all in one leaf partition.
      const leafOid = rows[i]!.leaf;
      let end = Math.min(rows.length, i + sizer.size);
      for (let k = i; k < end; k++) {
        if (rows[k]!.leaf !== leafOid) {
          end = k;
          break;
        }
      }
      const slice = rows.slice(i, end);
      const leaf = leaves.get(leafOid);
      if (!leaf) {
        // a partition created after describeTable: the next run sees it
        i = end;
        continue;
      }
      const out = await moveBatch(session, shape, leaf, slice, plainIds, skipLocked, (extra) => beginLocked(extra, batchTx));
      if (out.ok) {
        i = end;
        attempts = 0;
        if (skipLocked) report.batches_retried++;
        skipLocked = false;
        report.batches++;
        batchMs.push(out.ms);
        sizer.observe(slice.length, out.ms);
        report.skipped_busy += Math.max(0, slice.length - out.rows.length);
        if (out.rows.length < slice.length) {
          // Rows it did not move (busy, or changed: those have moved elsewhere): their user_ids may still be duplicated.
          const left = await session.query<{ user_id: string }>(leftAtSql(leaf), [plainArray(slice.map((p) => `(${p.block},${p.offset})`), true)]);
          for (const r of left.rows) leftUsers.add(r.user_id);
        }
        report.archived += out.rows.length;
        for (const r of out.rows) {
          shape.rowKey.forEach((c, k) => keyValues[k]!.push(r['k_' + c.name]!));
          const u = perUser.get(r.user_id) ?? { user_id: r.user_id, kept_id: r.kept_id, archived: 0 };
          u.kept_id = r.kept_id;
          u.archived++;
          perUser.set(r.user_id, u);
        }
        progress({
          phase: 'moving',
          pass,
          planned,
          movedThisPass: report.archived - movedBefore,
          moved: report.archived,
          batches: report.batches - batchesBefore,
          elapsedMs: Date.now() - passStart,
          backendPid: null,
        });
        continue;
      }
      // A failed batch changed nothing (its transaction was rolled back).
      const state = sqlstateOf(out.error);
      const rowLock = out.step === 'rows' && (state === '55P03' || state === '40P01');
      const retryable = rowLock || state === '55P03' || state === '40P01' || state === '40001' || state === '57014';
      attempts++;
      if (!retryable || attempts >= BATCH_RETRY.attempts || signal?.aborted) {
        if (state === '55P03' && out.step === 'table') throw await tableLockError(session, shape, leaf, lockKey, lockTimeoutMs, out.error, report.archived, attempts);
        throw out.error;
      }
      if (rowLock) skipLocked = true; // the application holds one of the rows: redo, skipping busy rows
      if (state === '57014') sizer.shrink();
      const delay = backoffDelay(attempts, BATCH_RETRY);
      const what = out.step === 'table' ? `waiting for the table lock on ${leaf.name}` : rowLock ? 'a row the application holds' : `SQLSTATE ${state}`;
      log(`dedupe: batch ${report.batches + 1}: ${what}; retrying in ${Math.round(delay)} ms${skipLocked ? ', skipping busy rows' : ''}`, 'warn');
      await sleep(delay, signal);
    }
    // The batches committed without waiting for the WAL flush: one synchronous commit makes them all durable.
    await session.transaction(writeTx, async () => {}, ['SELECT pg_catalog.txid_current()']);
    const movedThisPass = report.archived - movedBefore;
    movedLastPass = movedThisPass;
    report.phases_ms.move += Date.now() - passStart;
    log(
      `dedupe: pass ${pass}: moved ${plural(movedThisPass, 'row')} of ${plural(planned, 'planned row')} in ${plural(report.batches - batchesBefore, 'batch', 'batches')} ` +
        `(${((Date.now() - passStart) / 1000).toFixed(1)} s, longest batch ${Math.round(Math.max(0, ...batchMs))} ms)`,
    );
    // What is left: one plain scan (rows, moved ids still there, user_ids written since the plan),
    // then exact counts for the only user_ids that can still be duplicated; the next plan only when needed.
    const passXmin = plan.snapshotXmin;
    const after = await readTx('scanning', async (): Promise<Scan> => {
      const idValues = keyValues[shape.rowKey.findIndex((k) => k.name === 'id')]!;
      const c = await timed(
        'count',
        async () =>
          (
            await session.query<{ rows: string; moved_ids_in_table: string; written_users: string[] | null; in_archive?: string; distinct_in_archive?: string }>(
              checkSql(shape),
              [plainIds ? plainArray(idValues) : idValues, passXmin, ...(shape.rowKey.length === 1 ? [runStart] : [])],
            )
          ).rows[0]!,
      );
      movedIdsInTable = Number(c.moved_ids_in_table);
      if (c.in_archive !== undefined) lastArchiveCheck = { in_archive: c.in_archive, distinct_in_archive: c.distinct_in_archive! };
      const candidates = new Set([...leftUsers, ...(c.written_users ?? [])]);
      leftUsers.clear();
      const d =
        candidates.size === 0
          ? { duplicate_users: '0', excess_rows: '0' }
          : await timed('count', async () => (await session.query<{ duplicate_users: string; excess_rows: string }>(duplicatesSql(shape), [[...candidates]])).rows[0]!);
      const counts: Counts = {
        rows: Number(c.rows),
        duplicate_users: Number(d.duplicate_users),
        excess_rows: Number(d.excess_rows),
        archive_rows: await archiveRows(session, shape),
      };
      const more = counts.duplicate_users > 0 && report.passes < maxPasses;
      const next = more
        ? await timed('plan', async () => {
            const chunks = (await session.query<PlanChunk>(planSql(shape, keep))).rows;
            const xmin = (await session.query<{ xmin: string }>(SNAPSHOT_XMIN_SQL)).rows[0]!.xmin;
            return parsePlan(chunks, plainIds, xmin);
          })
        : { rows: [], users: 0, snapshotXmin: passXmin };
      return { counts, plan: next };
    }, pass + 1);
    last = after.counts;
    plan = after.plan;
  }
  report.moved = [...perUser.values()].sort((a, b) => (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0));
  const sorted = [...batchMs].sort((a, b) => a - b);
  report.longest_batch_ms = Math.round(sorted[sorted.length - 1] ?? 0);
  report.median_batch_ms = Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0);

  report.after = last;
  report.duplicates_remaining = last.duplicate_users;
  const b = report.before;
  const difference = last.rows + report.archived - b.rows;
  report.conservation = {
    holds: difference === 0,
    rows_before: b.rows,
    rows_after: last.rows,
    rows_archived: report.archived,
    difference,
    archive_grew_by: last.archive_rows - b.archive_rows,
  };

  const moved = keyValues[0]!.length;
  let v = { in_table: 0, in_archive: '0', distinct_in_archive: '0' };
  const archiveCheck = lastArchiveCheck as { in_archive: string; distinct_in_archive: string } | null; // (set inside a callback)
  if (moved > 0 && shape.rowKey.length === 1 && archiveCheck !== null) {
    v = { in_table: movedIdsInTable, in_archive: archiveCheck.in_archive, distinct_in_archive: archiveCheck.distinct_in_archive };
  } else if (moved > 0) {
    v = await timed('verify', () =>
      readTx('verifying', async () => {
        const keyParams = shape.rowKey.map((c, k) => (PLAIN_ID_TYPES.has(c.type) ? plainArray(keyValues[k]!) : keyValues[k]!));
        const a = (await session.query<{ in_archive: string; distinct_in_archive: string }>(verifySql(shape), [...keyParams, runStart])).rows[0]!;
        // Matched by the whole key, if any moved id is in the table at all.
        const inTable = movedIdsInTable === 0 ? 0 : Number((await session.query<{ in_table: string }>(inTableSql(shape), keyParams)).rows[0]!.in_table);
        return { in_table: inTable, ...a };
      }),
    );
  }
  const verification: Verification = {
    ok: false,
    moved,
    in_table: v.in_table,
    in_archive: Number(v.in_archive),
    distinct_in_archive: Number(v.distinct_in_archive),
  };
  verification.ok = verification.in_table === 0 && verification.in_archive === moved && verification.distinct_in_archive === moved;
  report.verification = verification;
  report.ok = verification.ok && report.duplicates_remaining === 0;
  report.elapsed_ms = Date.now() - started;
  return report;
}

type MovedRow = Record<string, string> & { user_id: string; kept_id: string };
type BatchOutcome = { ok: true; rows: MovedRow[]; ms: number } | { ok: false; step: 'table' | 'rows'; error: unknown };

/**
 * One batch = one transaction: dedupe's advisory lock, the table locks (ROW EXCLUSIVE on the
 * leaf and the archive, waited for before any row is locked), then the move in one statement
 * and COMMIT. `ms` is the time from the move's first row lock to the end of COMMIT.
 */
async function moveBatch(
  session: Session,
  shape: TableShape,
  leaf: Leaf,
  slice: PlanRow[],
  plainIds: boolean,
  skipLocked: boolean,
  beginLocked: (extra: string[]) => Promise<void>,
): Promise<BatchOutcome> {
  try {
    await beginLocked([`LOCK TABLE ONLY ${leafRef(leaf)}, ${qualify(shape.schema, ARCHIVE)} IN ROW EXCLUSIVE MODE`, `SET LOCAL lock_timeout = ${ROW_WAIT_MS}`]);
  } catch (error) {
    return { ok: false, step: 'table', error };
  }
  const t0 = performance.now();
  let rows: MovedRow[];
  try {
    const sql = skipLocked ? moveSkipLockedSql(shape, leaf) : moveSql(shape, leaf);
    const params = [
      plainArray(slice.map((p) => `(${p.block},${p.offset})`), true),
      plainArray(slice.map((p) => p.xmin)),
      plainIds ? plainArray(slice.map((p) => p.kept)) : slice.map((p) => p.kept),
    ];
    const r = await session.query<Record<string, string> & { tsm_tid: string; user_id: string; tsm_archived: number }>(sql, params);
    const archived = r.rows[0]?.tsm_archived ?? 0;
    if (r.rows.length !== archived) {
      await session.rollback();
      throw new FailError(
        `dedupe stopped: ${ARCHIVE} took ${archived} of the ${r.rows.length} rows a batch deleted (a trigger or a rule on it?); ` +
          `that batch was rolled back, so no row was lost; fix the archive table, then run ${tsmCommand(shape.schema, 'dedupe')} again`,
        { code: 'archive_mismatch' },
      );
    }
    await session.commit();
    const kept = new Map(slice.map((p) => [`(${p.block},${p.offset})`, p.kept]));
    rows = r.rows.map((x) => Object.assign(x, { kept_id: kept.get(x.tsm_tid) ?? '' }));
  } catch (error) {
    if (error instanceof FailError) throw error;
    await session.rollback();
    return { ok: false, step: 'rows', error: session.explain(error) };
  }
  return { ok: true, rows, ms: performance.now() - t0 };
}

/** A batch that never got its locks: name the timeout and who holds them (a migration, another dedupe). */
async function tableLockError(
  session: Session,
  shape: TableShape,
  leaf: Leaf,
  lockKey: number,
  lockTimeoutMs: number,
  err: unknown,
  archived: number,
  attempts: number,
): Promise<FailError> {
  const holders: string[] = [];
  try {
    for (const r of (await session.query<{ pid: number; mode: string }>(TABLE_BLOCKERS_SQL, [leaf.oid])).rows) holders.push(`pid ${r.pid} (${r.mode} on ${leaf.name})`);
    for (const r of (await session.query<{ pid: number }>(LOCK_HOLDERS_SQL, [lockKey])).rows) holders.push(`pid ${r.pid} (another tsm dedupe)`);
  } catch {
    // the message is still right without the holders
  }
  const state = archived > 0 ? `${plural(archived, 'row')} moved into ${ARCHIVE} before this; each batch is one transaction, so no row is half-moved` : 'nothing was moved';
  return new FailError(
    `dedupe stopped: lock_timeout (55P03): ${attempts} times no lock on ${quoteIdent(leaf.name)} within lock_timeout ${lockTimeoutMs} ms` +
      `${holders.length > 0 ? ` (held by ${holders.join(', ')})` : ' (a migration, a LOCK TABLE, another tsm dedupe?)'}; ${state}; ` +
      `run ${tsmCommand(shape.schema, 'dedupe')} again when it is done`,
    { code: 'lock_timeout', data: { archived }, cause: err },
  );
}
