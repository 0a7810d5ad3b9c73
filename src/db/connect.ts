import type { Client, ClientConfig } from 'pg';
import type { ConnectionSettings } from '../config.js';
import { ConnectError } from '../errors.js';
import { classifyError } from './classify.js';
import { NoPasswordError } from './resolve.js';
import { serverOffersTls, TlsError } from './tls.js';

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
  if (err instanceof TlsError || err instanceof NoPasswordError) return `cannot connect to ${target}: ${err.message}`;
  const c = classifyError(err);
  const timeoutS = settings.connectTimeout ?? Math.round((settings.pg.connectionTimeoutMillis ?? 10_000) / 1000);
  // A note from resolving (e.g. a password file ignored because others can read it).
  const notes = settings.params?.notes ?? [];
  const note = notes.length ? ` (${notes.join('; ')})` : '';
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
      return `cannot connect to ${target}: password authentication failed (check the user and password)${note}`;
    case '28000':
      return `cannot connect to ${target}: authentication rejected by the server (${c.message})${note}`;
    case '3D000':
      return `cannot connect to ${target}: ${c.message}`;
    case '42501':
      return `cannot connect to ${target}: permission denied (${c.message})`;
    case '53300':
      return `cannot connect to ${target}: too many connections`;
    case '57P03':
      return `cannot connect to ${target}: the server is starting up or shutting down`;
  }
  if (/timeout/i.test(c.message)) {
    return `cannot connect to ${target}: timed out after ${timeoutS}s (connect timeout: --connect-timeout, connect_timeout in the URL, PGCONNECT_TIMEOUT)`;
  }
  return `cannot connect to ${target}: ${c.message.split('\n')[0]}`;
}

/**
 * A plain connection refused with 28000 while sslmode=disable: when the server offers TLS, that
 * is almost always a `hostssl`-only pg_hba.conf (its message text is translated, so ask the
 * server instead of reading the text).
 */
async function explainRefusedPlain(err: unknown, settings: ConnectionSettings): Promise<string | undefined> {
  const p = settings.params;
  if (!p || p.sslmode !== 'disable' || p.host.startsWith('/') || classifyError(err).sqlstate !== '28000') return undefined;
  if ((await serverOffersTls(p.hostaddr ?? p.host, p.port)) !== true) return undefined;
  return `cannot connect to ${settings.display}: the server does not accept unencrypted connections (sslmode=disable); use sslmode=require or verify-full`;
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
    throw new ConnectError((await explainRefusedPlain(err, settings)) ?? connectErrorMessage(err, settings));
  }
  return client;
}
