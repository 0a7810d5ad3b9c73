import type { ClientConfig } from 'pg';
import { validateIdentifier } from './db/ident.js';
import { UsageError } from './errors.js';
import { parseIntStrict } from './parse.js';

export interface ConnectionSettings {
  /** What pg is given; the password is inside and must never be printed. */
  readonly pg: ClientConfig;
  /** The same target with the password replaced by `***`: safe to print. */
  readonly display: string;
  /** Where the settings came from. */
  readonly source: '--database-url' | 'DATABASE_URL' | 'PG* variables';
}

export interface GlobalOptions {
  databaseUrl?: string;
  schema?: string;
  json?: boolean;
  color?: boolean;
  connectTimeout?: string;
}

const NO_DATABASE =
  'no database configured: pass --database-url postgres://user@host:5432/db, or set DATABASE_URL or the libpq PG* variables (PGHOST, PGDATABASE, …); `tsm demo` needs none';

const LIBPQ_VARS = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGSERVICE'];

/** `postgres://user:***@host:5432/db`: the password, if any, replaced. Never throws. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    // Query parameters may carry a password too (libpq's `password=`).
    for (const key of [...u.searchParams.keys()]) {
      if (/pass/i.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString().replace('%2A%2A%2A', '***').replace(/password=%2A%2A%2A/gi, 'password=***');
  } catch {
    // Unparseable: keep scheme and host-ish part only, drop anything between ':' and '@'.
    return url.replace(/:\/\/([^:@/]*):[^@]*@/, '://$1:***@');
  }
}

function validateUrl(url: string, from: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${from} is not a valid URL: ${maskUrl(url)} (expected postgres://user:password@host:5432/database)`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new UsageError(`${from} must start with postgres:// or postgresql://, got ${u.protocol}//…`);
  }
  if (u.port && !/^\d+$/.test(u.port)) {
    throw new UsageError(`${from} has an invalid port: ${maskUrl(url)}`);
  }
}

export function parseConnectTimeout(raw: string | undefined): number {
  if (raw === undefined) return 10;
  return parseIntStrict('--connect-timeout', raw, 1, 3600);
}

/** A display URL for settings that come from PG* variables. */
function displayFromEnv(env: NodeJS.ProcessEnv): string {
  const user = env.PGUSER ?? env.USER ?? 'postgres';
  const pass = env.PGPASSWORD ? ':***' : '';
  const host = env.PGHOST ?? 'localhost';
  const port = env.PGPORT ?? '5432';
  const db = env.PGDATABASE ?? user;
  return `postgres://${user}${pass}@${host}:${port}/${db}`;
}

/**
 * Resolves the connection: `--database-url`, else `$DATABASE_URL`, else libpq `PG*` variables.
 * Throws UsageError (exit 2) when nothing is configured or the URL is malformed.
 */
export function resolveConnection(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const timeout = parseConnectTimeout(opts.connectTimeout);
  const common = { application_name: 'tsm', connectionTimeoutMillis: timeout * 1000 } satisfies ClientConfig;
  if (opts.databaseUrl !== undefined) {
    if (opts.databaseUrl.trim() === '') throw new UsageError('--database-url is empty');
    validateUrl(opts.databaseUrl, '--database-url');
    return { pg: { ...common, connectionString: opts.databaseUrl }, display: maskUrl(opts.databaseUrl), source: '--database-url' };
  }
  if (env.DATABASE_URL) {
    validateUrl(env.DATABASE_URL, 'DATABASE_URL');
    return { pg: { ...common, connectionString: env.DATABASE_URL }, display: maskUrl(env.DATABASE_URL), source: 'DATABASE_URL' };
  }
  if (LIBPQ_VARS.some((v) => env[v])) {
    // pg reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE itself.
    return { pg: { ...common }, display: displayFromEnv(env), source: 'PG* variables' };
  }
  throw new UsageError(NO_DATABASE);
}

/**
 * `--schema`: any identifier PostgreSQL accepts (quotes, spaces, unicode, up to 63 bytes); control
 * characters are refused (exit 2). The name is quoted wherever it reaches SQL (src/db/ident.ts).
 */
export function resolveSchema(raw: string | undefined): string {
  return validateIdentifier('--schema', raw ?? 'public');
}
