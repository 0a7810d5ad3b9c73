// bench/lib.mjs: the few helpers every benchmark script shares (a client per call, a database's
// URL on the bench server, whether a kept template database is still of the expected layout).
import pg from 'pg';

/** Runs fn with a fresh connection to url, closed afterwards whatever fn does. */
export async function withClient(url, fn) {
  const c = new pg.Client({ connectionString: url, application_name: 'tsm-bench' });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The URL of database db on the same server as serverUrl. */
export function databaseUrl(serverUrl, db) {
  const u = new URL(serverUrl);
  u.pathname = '/' + db;
  return u.toString();
}

/**
 * Whether the template database tpl exists on serverUrl and its telegram_sessions carries the
 * layout comment the script wrote when it built it (a template of another layout is rebuilt).
 */
export async function templateReady(serverUrl, tpl, layout) {
  return withClient(serverUrl, async (c) => {
    if ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [tpl])).rowCount !== 1) return false;
    return withClient(databaseUrl(serverUrl, tpl), async (t) => {
      const r = await t.query(`SELECT obj_description('public.telegram_sessions'::regclass) AS layout`).catch(() => null);
      return r?.rows[0]?.layout === layout;
    });
  });
}
