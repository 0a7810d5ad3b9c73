/**
 * `--targets FILE` / `--targets-like PATTERN` on doctor, migrate status, migrate up and test-write
 * (design, "Fleet"): the command's own run() once per target, in-process, each target with its own
 * context (its own connections, its own migration lock, log lines prefixed with its name), bounded
 * by --parallel and by a connection budget per server (src/fleet/engine.ts). The per-target
 * `result` is the command's JSON document, or its error document when it stopped with an error.
 *
 * Everything the user can get wrong is found before anything connects: the command's own options,
 * the fleet flags, the file, every `${VAR}`, every target's connection string (exit 2).
 *
 * Ctrl-C: the fleet's entry sits at the bottom of the cleanup stack. The first signal aborts
 * ctx.signal (shared by every target's context): no new target starts, the running ones stop at
 * their own safe point (their cleanups run first, from the top of the stack); then the fleet's
 * entry reports each target's state (the table on stdout; with --json, one line per target on
 * stderr, since the JSON document of an interrupted run is main's) and the final line says how many
 * of each. A rerun is the resume: targets already up to date do nothing.
 */
import { readFile } from 'node:fs/promises';
import type { Client } from 'pg';
import { maskUrl, resolveConnection, type ConnectionSettings, type GlobalOptions } from '../../config.js';
import { connect } from '../../db/connect.js';
import { ConnectError, EXIT, TsmError, UsageError } from '../../errors.js';
import { defaultBudget, readServerRoom, MAX_DEFAULT_BUDGET } from '../../fleet/budget.js';
import { runFleet, type FleetRun, type FleetTarget, type OnError, type TargetOutcome, type TargetRun } from '../../fleet/engine.js';
import { parseTargetFile, withDatabase } from '../../fleet/targets.js';
import { parseChoice, parseIntStrict } from '../../parse.js';
import { makeContext, type CommandResult, type Context } from '../context.js';
import type { Cleanups } from '../cleanup.js';
import { errorDocument } from '../error-document.js';
import { defaultOf, GLOBAL_OPTIONS, optionValue, type CommandArgs, type RawOptions } from '../options.js';
import type { Loader } from '../program.js';
import { PROFILES, type FleetCommand } from './commands.js';
import { FLEET_KEYS, FLEET_ON_ERROR, MAX_BUDGET, MAX_PARALLEL, fleetOptions } from './flags.js';
import { makeFleetProgress, type FleetProgress } from './progress.js';
import { fleetDocument, renderFleet, renderRows, totalLine, type FleetDocument, type Row } from './render.js';

const terminalWidth = (): number | undefined => (process.stdout.isTTY ? process.stdout.columns : undefined);

/** Whether the options ask for a fleet run. */
export function isFleetRun(options: RawOptions): boolean {
  return typeof options.targets === 'string' || typeof options.targetsLike === 'string';
}

export interface FleetSettings {
  targets: string | undefined;
  targetsLike: string | undefined;
  parallel: number;
  canary: number;
  onError: OnError;
  /** --connection-budget, when given. */
  budget: number | undefined;
}

export function defaultOnError(command: FleetCommand): OnError {
  return command === 'migrate up' ? 'stop' : 'continue';
}

export function parseFleetSettings(command: FleetCommand, args: CommandArgs): FleetSettings {
  const specs = fleetOptions(defaultOnError(command));
  const o = args.options;
  const value = (key: (typeof FLEET_KEYS)[number]): unknown => optionValue(specs, o, key);
  const targets = value('targets');
  const targetsLike = value('targetsLike');
  if (targets !== undefined && targetsLike !== undefined) throw new UsageError('--targets and --targets-like exclude each other: give one');
  if (targetsLike !== undefined && String(targetsLike) === '') throw new UsageError("--targets-like: expected a SQL LIKE pattern such as 'tenant_%'");
  if (targets !== undefined && String(targets).trim() === '') throw new UsageError('--targets: expected a file (or - for stdin)');
  if (targets !== undefined && typeof o.databaseUrl === 'string') {
    throw new UsageError('--targets and -d/--database-url exclude each other: the file names every database (--targets-like PATTERN uses -d)');
  }
  const budget = value('connectionBudget');
  return {
    targets: targets === undefined ? undefined : String(targets),
    targetsLike: targetsLike === undefined ? undefined : String(targetsLike),
    parallel: parseIntStrict('--parallel', value('parallel'), 1, MAX_PARALLEL),
    canary: parseIntStrict('--canary', value('canary'), 0, 1_000_000),
    onError: parseChoice('--on-error', value('onError'), FLEET_ON_ERROR),
    budget: budget === undefined ? undefined : parseIntStrict('--connection-budget', budget, 1, MAX_BUDGET),
  };
}

/** One target as the CLI knows it. */
interface Target extends FleetTarget {
  /** The connection string given to the target's context (undefined: the environment's PG* variables). */
  readonly conn: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** Resolved up front; undefined when resolving needs a file that is not there (that target is then unreachable). */
  readonly settings: ConnectionSettings | undefined;
  /** Its line in the file (0 for --targets-like), and whether the file named it. */
  readonly line: number;
  readonly named: boolean;
}

function serverKey(s: ConnectionSettings | undefined, fallback: string): string {
  const p = s?.params;
  return p ? `${p.hostaddr ?? p.host}:${p.port}` : fallback;
}

const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';

/** --connect-timeout reaches every target only when it differs from the default (then the URL's connect_timeout and PGCONNECT_TIMEOUT can apply). */
function connectTimeoutOf(options: RawOptions): string | undefined {
  const v = options.connectTimeout;
  return typeof v === 'string' && v !== defaultOf(GLOBAL_OPTIONS, 'connectTimeout') ? v : undefined;
}

async function readTargetsText(file: string): Promise<{ text: string; source: string }> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    return { text: Buffer.concat(chunks).toString('utf8'), source: 'stdin' };
  }
  try {
    return { text: await readFile(file, 'utf8'), source: file };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : firstLine(err);
    throw new UsageError(`--targets: cannot read ${file}: ${why}`);
  }
}

/** Resolves a target's connection string now: a malformed one is exit 2 before anything connects. */
function resolveTarget(conn: string | undefined, env: NodeJS.ProcessEnv, timeout: string | undefined, where: string): ConnectionSettings | undefined {
  try {
    return resolveConnection({ databaseUrl: conn, ...(timeout !== undefined ? { connectTimeout: timeout } : {}) }, env);
  } catch (err) {
    if (err instanceof ConnectError) return undefined; // e.g. a certificate file it names is missing: that target is unreachable
    if (err instanceof TsmError) throw new UsageError(`${where}: ${firstLine(err).replace(/^--database-url /, 'the connection string ')}`, { code: err.code });
    throw err;
  }
}

async function fromFile(file: string, env: NodeJS.ProcessEnv, timeout: string | undefined): Promise<Target[]> {
  const { text, source } = await readTargetsText(file);
  const lines = parseTargetFile(text, source, env);
  return lines.map((l) => {
    const settings = resolveTarget(l.conn, env, timeout, `${source}:${l.line}`);
    const url = settings?.display ?? maskUrl(l.conn);
    const name = l.name ?? settings?.params?.dbname ?? url;
    return { name, url, server: serverKey(settings, `${source}:${l.line}`), conn: l.conn, env, settings, line: l.line, named: l.name !== undefined };
  });
}

async function fromLike(ctx: Context, args: CommandArgs, pattern: string, env: NodeJS.ProcessEnv, timeout: string | undefined): Promise<Target[]> {
  let base: ConnectionSettings;
  try {
    base = ctx.connection();
  } catch (err) {
    if (err instanceof UsageError && err.code === 'usage' && /no database configured/.test(err.message)) {
      throw new UsageError(`--targets-like needs the server to list databases on: -d postgres://user@host:5432/postgres (or DATABASE_URL, or the PG* variables)`);
    }
    throw err;
  }
  const client = await ctx.connect();
  let names: string[];
  try {
    const r = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_catalog.pg_database
        WHERE datname LIKE $1 AND NOT datistemplate AND datallowconn
        ORDER BY datname COLLATE "C"`,
      [pattern],
    );
    names = r.rows.map((x) => x.datname);
  } finally {
    await client.end().catch(() => {});
  }
  if (names.length === 0) {
    throw new UsageError(`--targets-like '${pattern}': no database on ${base.display} matches (templates and databases that allow no connections are left out)`, {
      code: 'no_targets',
    });
  }
  const raw = typeof args.options.databaseUrl === 'string' ? args.options.databaseUrl : env.DATABASE_URL ? env.DATABASE_URL : undefined;
  return names.map((db) => {
    // A URL or keyword/value string with the database replaced; with PG* variables only, PGDATABASE.
    const conn = raw !== undefined ? withDatabase(raw, db) : undefined;
    const tenv = raw !== undefined ? env : { ...env, PGDATABASE: db, DATABASE_URL: undefined };
    const settings = resolveTarget(conn, tenv, timeout, `--targets-like: database ${db}`);
    const url = settings?.display ?? (conn !== undefined ? maskUrl(conn) : db);
    return { name: db, url, server: serverKey(settings, base.display), conn, env: tenv, settings, line: 0, named: true };
  });
}

/** Unique names: a derived name that collides becomes `db@host:port`; the same database twice is refused. */
function checkNames(targets: Target[], source: string): Target[] {
  const seen = new Map<string, number>();
  for (const t of targets) {
    const db = t.settings?.params?.dbname;
    if (db === undefined) continue;
    const key = `${t.server}/${db}`;
    const prev = seen.get(key);
    if (prev !== undefined) throw new UsageError(`${source}: lines ${prev} and ${t.line} name the same database (${t.url}): list it once`);
    seen.set(key, t.line);
  }
  const count = new Map<string, number>();
  for (const t of targets) count.set(t.name, (count.get(t.name) ?? 0) + 1);
  const out = targets.map((t) => (!t.named && (count.get(t.name) ?? 0) > 1 ? { ...t, name: `${t.name}@${t.server}` } : t));
  const byName = new Map<string, number>();
  for (const t of out) {
    const prev = byName.get(t.name);
    if (prev !== undefined) throw new UsageError(`${source}: target name '${t.name}' is used twice (lines ${prev} and ${t.line}): names must be unique`);
    byName.set(t.name, t.line);
  }
  return out;
}

/** The table has a URL column: `cannot connect to <that url>: why` becomes `cannot connect: why` there. */
function shorter(message: string, t: Target): string {
  return message.split(`cannot connect to ${t.url}: `).join('cannot connect: ');
}

/** Messages of connect() that mean the server itself cannot be reached (the same for every database on it). */
const SERVER_DOWN = /: (connection refused|host not found|host unreachable|timed out after)/;

export async function runFleetCommand(command: FleetCommand, load: Loader, ctx: Context, args: CommandArgs): Promise<CommandResult<FleetDocument>> {
  const profile = PROFILES[command];
  // Everything the user can get wrong, before anything connects.
  const fleet = parseFleetSettings(command, args);
  const { weight } = profile.prepare(args);
  if (fleet.budget !== undefined && fleet.budget < weight) {
    throw new UsageError(`--connection-budget ${fleet.budget} is below what one ${command} target holds (${weight} connections): give at least ${weight}`);
  }
  const env = process.env;
  const timeout = connectTimeoutOf(args.options);
  const listed =
    fleet.targets !== undefined
      ? checkNames(await fromFile(fleet.targets, env, timeout), fleet.targets === '-' ? 'stdin' : fleet.targets)
      : await fromLike(ctx, args, fleet.targetsLike!, env, timeout);

  const progress: FleetProgress = makeFleetProgress();
  const counts = { total: listed.length, done: 0, running: 0, failed: 0, unreachable: 0 };
  const rows: Row[] = listed.map((t) => ({ name: t.name, url: t.url, status: 'skipped', exit_code: null, summary: 'not started' }));
  const say = (line: string): void => progress.log(`tsm ${command}: ${line}`);

  // Servers whose probe found them unreachable: their targets are reported without another wait.
  const down = new Map<string, { message: string; display: string }>();
  const budgetFor = async (server: string, first: Target): Promise<number> => {
    const fallback = weight * fleet.parallel;
    if (fleet.budget !== undefined) return fleet.budget;
    if (first.settings === undefined) return fallback;
    let client: Client | undefined;
    try {
      client = await connect(first.settings);
      const room = await readServerRoom(client);
      const budget = defaultBudget(room);
      say(
        `${server}: connection budget ${budget} (half of the ${room.free} free connections of max_connections ${room.max_connections}, at most ${MAX_DEFAULT_BUDGET}; --connection-budget sets it)` +
          (budget < weight ? `; one target holds up to ${weight}: targets there run one at a time` : ''),
      );
      return budget;
    } catch (err) {
      const message = firstLine(err);
      if (err instanceof ConnectError && SERVER_DOWN.test(message)) {
        down.set(server, { message, display: first.url });
      } else {
        say(`${server}: could not read the free connections (${message}); at most ${fallback} connections there (--parallel × ${weight})`);
      }
      return fallback;
    } finally {
      await client?.end().catch(() => {});
    }
  };

  const timeoutGlobal = timeout !== undefined ? { connectTimeout: timeout } : {};
  const targetOptions = (t: Target): RawOptions => {
    const o: Record<string, unknown> = { ...args.options, databaseUrl: t.conn };
    for (const k of FLEET_KEYS) delete o[k];
    return o;
  };

  const runOne = async (t: Target): Promise<TargetRun> => {
    const gone = down.get(t.server);
    if (gone !== undefined) {
      const err = new ConnectError(gone.message.split(gone.display).join(t.url));
      return { exitCode: err.exitCode, result: errorDocument(err), summary: shorter(err.message, t) };
    }
    const globals: GlobalOptions = { databaseUrl: t.conn, schema: ctx.schema, json: ctx.json, color: ctx.color, ...timeoutGlobal };
    // The target's cleanups run on the fleet's stack, but what they say belongs to the target's own
    // line (its summary), not to the fleet's final line.
    const notes: string[] = [];
    const cleanups = scopedCleanups(ctx.cleanups, (note) => notes.push(note));
    const tctx = makeContext(globals, { cleanups, env: t.env, log: (line) => progress.log(`[${t.name}] ${line}`), fleetTarget: t.name });
    try {
      const mod = await load();
      const r = await mod.run(tctx, { positional: args.positional, options: targetOptions(t) });
      return { exitCode: r.exitCode, result: r.data, summary: profile.summarize(r.data, r.exitCode) };
    } catch (err) {
      // Stopped by Ctrl-C: exit 130 like the command alone; its own account of what it left, if any.
      if (ctx.signal.aborted && (!(err instanceof TsmError) || err.code === 'interrupted')) {
        const said = err instanceof TsmError ? err.message : (notes[0] ?? 'interrupted');
        return { exitCode: 130, result: { ok: false, error: { code: 'interrupted', message: said } }, summary: shorter(said, t) };
      }
      const doc = errorDocument(err);
      return { exitCode: err instanceof TsmError ? err.exitCode : EXIT.failed, result: doc, summary: shorter(doc.error.message, t) };
    }
  };

  // Ctrl-C: this entry runs last (the targets' own cleanups are above it), once every running target stopped.
  let resolveDone!: (r: FleetRun) => void;
  const finished = new Promise<FleetRun>((resolve) => (resolveDone = resolve));
  const report = (r: readonly Row[], outcomes: readonly Pick<TargetOutcome, 'status'>[]): string => {
    progress.done();
    if (ctx.json) {
      for (const row of r) process.stderr.write(`tsm ${command}: ${row.name}: ${row.status}${row.exit_code === null ? '' : ` (exit ${row.exit_code})`}: ${row.summary}\n`);
    } else {
      process.stdout.write(renderRows(r, ctx.style, terminalWidth()) + '\n');
    }
    return `${totalLine(outcomes)}; a rerun resumes (targets already done do nothing)`;
  };
  const handle = ctx.cleanups.push({
    what: 'no new target starts; the running ones stop at a safe point',
    run: async () => {
      const r = await finished;
      return report(r.outcomes, r.outcomes);
    },
    emergencyWhat: 'reporting each target as it is now',
    emergency: async () => {
      const now = rows.map((row) => ({ ...row }));
      return report(now, now.map((row) => ({ status: row.status === 'running' ? 'failed' : row.status })));
    },
  });

  const run = await runFleet<Target>({
    targets: listed,
    parallel: fleet.parallel,
    canary: fleet.canary,
    onError: fleet.onError,
    weight,
    budget: budgetFor,
    run: runOne,
    signal: ctx.signal,
    onEvent: (e) => {
      if (e.type === 'start') {
        counts.running++;
        rows[e.index] = { ...rows[e.index]!, status: 'running', summary: 'running' };
      } else if (e.type === 'done') {
        counts.running--;
        counts.done++;
        if (e.outcome.status === 'failed') counts.failed++;
        if (e.outcome.status === 'unreachable') counts.unreachable++;
        rows[e.index] = e.outcome;
      } else if (e.reason.kind === 'canary') {
        say(`canary ${e.reason.after} was not ok: nothing else starts`);
      } else if (e.reason.kind === 'stop') {
        say(`${e.reason.after} was not ok: no new target starts (--on-error stop); the running ones finish`);
      }
      progress.update(counts);
    },
  });
  progress.done();
  resolveDone(run);
  // Not interrupted: the entry is not needed (on a signal the stack runs it and reports).
  if (!ctx.signal.aborted) handle.release();

  const data = fleetDocument(run);
  return { exitCode: run.ok ? EXIT.ok : EXIT.failed, data, render: (style) => renderFleet(command, ctx.schema, run, style, terminalWidth()) };
}

/**
 * A target's view of the fleet's cleanup stack: the same signal, entries on the same stack (so a
 * signal runs them first, before the fleet's own report), but each entry's note goes to `onNote`
 * (the target's summary) instead of into the fleet's final line.
 */
function scopedCleanups(parent: Cleanups, onNote: (note: string) => void): Cleanups {
  const keep = (note: string | void): undefined => {
    if (typeof note === 'string' && note !== '') onNote(note);
    return undefined;
  };
  return {
    signal: parent.signal,
    received: () => parent.received(),
    push: (entry) =>
      parent.push({
        what: entry.what,
        run: async () => keep(await entry.run()),
        ...(entry.emergency ? { emergency: async () => keep(await entry.emergency!()) } : {}),
        ...(entry.emergencyWhat !== undefined ? { emergencyWhat: entry.emergencyWhat } : {}),
      }),
  };
}
