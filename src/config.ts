import type { ClientConfig } from 'pg';
import { validateIdentifier } from './db/ident.js';
import { UsageError } from './errors.js';
import { parseIntStrict } from './parse.js';
import { maskUrl, parseConnectionString, type LibpqParams } from './db/conninfo.js';
import { resolvePg } from './db/resolve.js';

export interface ConnectionSettings {
  /** What pg is given (libpq semantics: see src/db/resolve.ts); holds the password: never print it. */
  readonly pg: ClientConfig;
  /** The same target with the password replaced by `***`: safe to print. */
  readonly display: string;
  /** Where the settings came from. */
  readonly source: '--database-url' | 'DATABASE_URL' | 'PG* variables';
  /** The resolved libpq parameters (host, port, user, dbname, sslmode, …), without the password. */
  readonly params?: LibpqParams;
  /** Connect timeout in seconds (command line, else URL, else PGCONNECT_TIMEOUT, else 10). */
  readonly connectTimeout?: number;
}

export interface GlobalOptions {
  databaseUrl?: string;
  schema?: string;
  json?: boolean;
  color?: boolean;
  /** Undefined when --connect-timeout was not given (the URL or PGCONNECT_TIMEOUT may then say). */
  connectTimeout?: string;
}

const NO_DATABASE =
  'no database configured: pass --database-url postgres://user@host:5432/db, or set DATABASE_URL or the libpq PG* variables (PGHOST, PGDATABASE, PGSERVICE, …); `tsm demo` needs none';

/** Any of these set means "the environment describes a database" (libpq would connect with it). */
const LIBPQ_VARS = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGSERVICE'];

export { maskUrl } from './db/conninfo.js';

/** `--connect-timeout`: whole seconds 1 … 3600; undefined when not given. */
export function parseConnectTimeout(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  return parseIntStrict('--connect-timeout', raw, 1, 3600);
}

function fromUrl(url: string, source: '--database-url' | 'DATABASE_URL', timeout: number | undefined, env: NodeJS.ProcessEnv): ConnectionSettings {
  if (url.trim() === '') throw new UsageError(`${source} is empty`);
  const t = resolvePg(url, { env, from: source, ...(timeout !== undefined ? { connectTimeout: timeout } : {}) });
  // The user's own URL (masked) when it names the server; the resolved target when a service,
  // the environment or a keyword/value string supplied it.
  const explicit = parseConnectionString(url, source);
  const ownForm = /^postgres(?:ql)?:\/\//i.test(url.trim()) && explicit.host !== undefined && explicit.service === undefined;
  return { pg: t.config, display: ownForm ? maskUrl(url.trim()) : t.display, source, params: t.params, connectTimeout: t.connectTimeout };
}

/**
 * Resolves the connection: `--database-url`, else `$DATABASE_URL`, else libpq `PG*` variables
 * (and PGSERVICE), with libpq's meaning for every parameter (src/db/conninfo.ts). A URL is
 * completed from the environment where it is silent, as libpq does. Throws UsageError (exit 2)
 * when nothing is configured or the URL is malformed, ConnectError (exit 3) when a certificate
 * file it names cannot be used.
 */
export function resolveConnection(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const timeout = parseConnectTimeout(opts.connectTimeout);
  if (opts.databaseUrl !== undefined) return fromUrl(opts.databaseUrl, '--database-url', timeout, env);
  if (env.DATABASE_URL) return fromUrl(env.DATABASE_URL, 'DATABASE_URL', timeout, env);
  if (LIBPQ_VARS.some((v) => env[v])) {
    const t = resolvePg(undefined, { env, ...(timeout !== undefined ? { connectTimeout: timeout } : {}) });
    return { pg: t.config, display: t.display, source: 'PG* variables', params: t.params, connectTimeout: t.connectTimeout };
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
