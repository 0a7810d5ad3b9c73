/**
 * Each test file works in its own freshly created database on the test server
 * (TSM_TEST_DATABASE_URL, set by scripts/run-tests.mjs) and drops it at the end.
 */
import { after } from 'node:test';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export function serverUrl(): string {
  const url = process.env.TSM_TEST_DATABASE_URL;
  if (!url) throw new Error('TSM_TEST_DATABASE_URL is not set: run the tests with `npm test`');
  return url;
}

/** The server URL pointed at another database (and optionally another user/password). */
export function urlFor(database: string, auth?: { user: string; password?: string }): string {
  const u = new URL(serverUrl());
  u.pathname = '/' + database;
  if (auth) {
    u.username = auth.user;
    u.password = auth.password ?? '';
  }
  return u.toString();
}

export interface TestRole {
  readonly name: string;
  readonly password: string;
  /** This database's URL, logged in as the role. */
  readonly url: string;
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** A connected client on this database; closed automatically at the end of the file. */
  client(): Promise<pg.Client>;
  /** Runs SQL (one or several statements) on this database. */
  sql(text: string, values?: unknown[]): Promise<pg.QueryResult>;
  /** Creates a login role (cluster-wide, unique name), dropped with the database. */
  role(prefix: string, password?: string): Promise<TestRole>;
  drop(): Promise<void>;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: serverUrl(), application_name: 'tsm-test' });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * Creates a fresh database for the calling test file. Call it at the top level of the file
 * (`const db = await createTestDatabase(import.meta.url)`): its removal is registered with after().
 */
export async function createTestDatabase(fileUrl: string): Promise<TestDatabase> {
  const stem = basename(fileURLToPath(fileUrl)).replace(/\.test\.js$/, '').replace(/[^a-z0-9]+/gi, '_').toLowerCase();
  const name = `tsm_t_${stem}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`.slice(0, 63);
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  const url = urlFor(name);
  const clients: pg.Client[] = [];
  const roles: string[] = [];
  const client = async (): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: url, application_name: 'tsm-test' });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
    return c;
  };
  let shared: pg.Client | undefined;
  let dropped = false;
  const db: TestDatabase = {
    name,
    url,
    client,
    sql: async (text, values) => {
      shared ??= await client();
      return shared.query(text, values as unknown[]);
    },
    role: async (prefix, password) => {
      // Always a password: the embedded server authenticates by password, the machine's by trust.
      const role = `${prefix}_${Math.random().toString(36).slice(2, 8)}`;
      const pw = password ?? 'pw-' + Math.random().toString(36).slice(2, 10);
      await admin((c) => c.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${pw.replace(/'/g, "''")}'`));
      roles.push(role);
      return { name: role, password: pw, url: urlFor(name, { user: role, password: pw }) };
    },
    drop: async () => {
      if (dropped) return;
      dropped = true;
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await admin(async (c) => {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        for (const role of roles) {
          await c.query(`DROP OWNED BY "${role}" CASCADE`).catch(() => {});
          await c.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => {});
        }
      });
    },
  };
  after(() => db.drop());
  return db;
}

/** Runs fn as the server's superuser on the server's default database. */
export const asAdmin = admin;
