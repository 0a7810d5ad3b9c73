/**
 * The one way tsm (and the library) turns a URL or the environment into a `pg.ClientConfig`
 * that behaves like libpq: every parameter resolved here (URL → service → PG* → defaults, the
 * password file), TLS negotiated by tsm's own socket (see tls.ts), so node-postgres neither
 * reads the environment nor the password file itself and prints no warnings.
 */
import type { ClientConfig } from 'pg';
import { displayUrl, parseConnectionString, resolveLibpq, type LibpqParams } from './conninfo.js';
import { buildTlsPlan, LibpqSocket } from './tls.js';

/** tsm's connect timeout when neither the command line, the URL nor PGCONNECT_TIMEOUT says. */
export const DEFAULT_CONNECT_TIMEOUT_S = 10;

export interface PgConfigOptions {
  /** The environment to read PG* variables, HOME etc. from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Seconds; beats the URL's connect_timeout and PGCONNECT_TIMEOUT. */
  connectTimeout?: number;
  /** Default 'tsm' (the design: application_name is tsm on every connection). */
  applicationName?: string;
  /** Names the origin of the URL in messages (default 'the URL'). */
  from?: string;
}

export interface PgTarget {
  /** Give it to `new pg.Client()` or `new pg.Pool()` (spread it to add pool options). */
  readonly config: ClientConfig;
  /** The resolved parameters, without the password. */
  readonly params: LibpqParams;
  readonly hasPassword: boolean;
  /** Connect timeout actually used, in seconds. */
  readonly connectTimeout: number;
  /** The target resolved, with `***` for a password: safe to print. */
  readonly display: string;
}

/** The server asked for a password and none was given anywhere (libpq: "no password supplied"). */
export class NoPasswordError extends Error {
  readonly code = '28P01';
  constructor(params: LibpqParams) {
    const notes = params.notes.length ? `; ${params.notes.join('; ')}` : '';
    super(`the server asks for a password for user "${params.user}" and none was given (put it in the URL, PGPASSWORD or ~/.pgpass${notes})`);
    this.name = 'NoPasswordError';
  }
}

/**
 * Resolves `url` (a postgres:// URL or a libpq `key=value` string; undefined: the environment
 * only) into a ready pg configuration. Throws UsageError (bad URL, unknown parameter, missing
 * service) or ConnectError (a named certificate file missing, a private key readable by others).
 */
export function resolvePg(url: string | undefined, opts: PgConfigOptions = {}): PgTarget {
  const env = opts.env ?? process.env;
  const from = opts.from ?? 'the URL';
  const explicit = url === undefined ? {} : parseConnectionString(url, from);
  const { params, password } = resolveLibpq({ explicit, env, from: url === undefined ? 'the environment' : from });
  const plan = buildTlsPlan(params);
  const connectTimeout = opts.connectTimeout ?? params.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_S;
  const config: ClientConfig = {
    host: params.host,
    port: params.port,
    user: params.user,
    database: params.dbname,
    // A function: pg calls it only when the server asks, and never falls back to its own
    // (deprecated) .pgpass reading or to process.env.PGPASSWORD.
    password: () => {
      if (password === undefined) throw new NoPasswordError(params);
      return password;
    },
    application_name: opts.applicationName ?? 'tsm',
    connectionTimeoutMillis: connectTimeout * 1000,
    // TLS is negotiated by LibpqSocket; pg itself must never send an SSLRequest. Plain-only
    // targets (sslmode=disable, Unix sockets) keep pg's own net.Socket.
    ssl: false,
    ...(plan.sslmode === 'disable' || params.host.startsWith('/') ? {} : { stream: (() => new LibpqSocket(plan)) as unknown as ClientConfig['stream'] }),
    keepAlive: params.keepalives,
    ...(params.keepalivesIdle !== undefined ? { keepAliveInitialDelayMillis: params.keepalivesIdle * 1000 } : {}),
    ...(params.options !== undefined ? { options: params.options } : {}),
    ...(params.clientEncoding !== undefined ? { client_encoding: params.clientEncoding } : {}),
  };
  return { config, params, hasPassword: password !== undefined, connectTimeout, display: displayUrl(params, password !== undefined) };
}

/** Shorthand: the `pg.ClientConfig` for a URL (or the environment), libpq semantics. */
export function pgConfig(url?: string, opts: PgConfigOptions = {}): ClientConfig {
  return resolvePg(url, opts).config;
}
