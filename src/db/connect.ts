import type { Client, ClientConfig } from 'pg';
import type { ConnectionSettings } from '../config.js';
import { ConnectError } from '../errors.js';
import { classifyError } from './classify.js';

/** pg is loaded lazily so `tsm --help` stays fast. */
export async function loadPg(): Promise<typeof import('pg').default> {
  return (await import('pg')).default;
}

/**
 * Turns a failed connect into one clear line (exit 3). The server's own message is used for
 * authentication and missing-database errors; it never contains the password.
 */
export function connectErrorMessage(err: unknown, settings: ConnectionSettings): string {
  const target = settings.display;
  const c = classifyError(err);
  const timeoutS = Math.round((settings.pg.connectionTimeoutMillis ?? 10_000) / 1000);
  switch (c.sqlstate) {
    case 'ECONNREFUSED':
      return `cannot connect to ${target}: connection refused (is PostgreSQL running and listening there?)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to ${target}: host not found`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot connect to ${target}: host unreachable (${c.sqlstate})`;
    case '28P01':
      return `cannot connect to ${target}: password authentication failed (check the user and password)`;
    case '28000':
      return `cannot connect to ${target}: authentication rejected by the server (${c.message})`;
    case '3D000':
      return `cannot connect to ${target}: ${c.message}`;
    case '42501':
      return `cannot connect to ${target}: permission denied (${c.message})`;
    case '53300':
      return `cannot connect to ${target}: too many connections`;
    case '57P03':
      return `cannot connect to ${target}: the server is starting up or shutting down`;
  }
  if (/timeout/i.test(c.message)) return `cannot connect to ${target}: timed out after ${timeoutS}s`;
  return `cannot connect to ${target}: ${c.message.split('\n')[0]}`;
}

/** Connects one client (application_name=tsm) or throws ConnectError with a one-line message. */
export async function connect(settings: ConnectionSettings, extra: Partial<ClientConfig> = {}): Promise<Client> {
  const pg = await loadPg();
  const client = new pg.Client({ ...settings.pg, ...extra });
  // An idle client whose server goes away emits 'error'; without a listener Node would crash.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw new ConnectError(connectErrorMessage(err, settings));
  }
  return client;
}

/** Runs fn with a connected client and always closes it. */
export async function withClient<T>(settings: ConnectionSettings, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await connect(settings);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}
