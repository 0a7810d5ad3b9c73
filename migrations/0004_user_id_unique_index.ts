/**
 * 0004_user_id_unique_index: the unique partial index that INSERT … ON CONFLICT (user_id) WHERE
 * user_id IS NOT NULL needs (its absence was the incident's root cause, SQLSTATE 42P10).
 *
 * Built with CREATE UNIQUE INDEX CONCURRENTLY, so writers are never blocked: outside a
 * transaction (pgm.noTransaction()), each statement sent alone in its own query (node-postgres
 * would wrap a multi-statement string in one implicit transaction). Converges from any state:
 *   - a valid, unique, non-deferrable index whose only key is user_id (no predicate, or
 *     `user_id IS NOT NULL`) under any name: nothing to build;
 *   - duplicate user_ids: stops before touching anything, says how many, and that `tsm dedupe`
 *     resolves them (the index build would fail on them anyway, after minutes of work);
 *   - an INVALID index of this name left by a failed concurrent build (CREATE INDEX IF NOT EXISTS
 *     would silently keep it): dropped CONCURRENTLY, then rebuilt. An index whose build is still
 *     running looks the same in pg_index; pg_stat_progress_create_index tells them apart, and a
 *     running build is never dropped;
 *   - lock_timeout also applies to the waits inside CREATE INDEX CONCURRENTLY: a build that times
 *     out leaves an INVALID index, which is dropped right away (and, should that drop time out as
 *     well, at the start of the next attempt) before tsm retries.
 *
 * down: DROP INDEX CONCURRENTLY of this name only; an equivalent index under another name (a
 * hand fix that made `up` skip) is left alone. No data is lost.
 */
import type { MigrationBuilder } from 'node-pg-migrate';

interface ReadDb {
  select(sql: string, values?: unknown[]): Promise<any[]>;
}

const NAME = 'telegram_sessions_user_id_unique';
const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

async function targetSchema(db: ReadDb): Promise<string> {
  const [row] = await db.select(`SELECT coalesce(nullif(current_setting('tsm.schema', true), ''), current_schema()) AS s`);
  if (!row?.s) throw new Error('no target schema: set tsm.schema or the search_path');
  return row.s as string;
}

interface IndexRow {
  name: string;
  is_unique: boolean;
  is_valid: boolean;
  is_ready: boolean;
  is_immediate: boolean;
  keys: string[];
  predicate: string | null;
  building_pid: number | null;
}

async function tableExists(db: ReadDb, schema: string): Promise<boolean> {
  const [row] = await db.select(
    `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1::text AND c.relname = 'telegram_sessions' AND c.relkind IN ('r', 'p')) AS ok`,
    [schema],
  );
  return row.ok === true;
}

async function indexes(db: ReadDb, schema: string): Promise<IndexRow[]> {
  return db.select(
    `SELECT ic.relname::text AS name, i.indisunique AS is_unique, i.indisvalid AS is_valid,
            i.indisready AS is_ready, i.indimmediate AS is_immediate,
            array(SELECT coalesce(a.attname::text, '(expression)')
                    FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                    LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
                   WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS keys,
            pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate,
            (SELECT p.pid FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid LIMIT 1) AS building_pid
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class c     ON c.oid = i.indrelid
       JOIN pg_catalog.pg_class ic    ON ic.oid = i.indexrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = 'telegram_sessions'
      ORDER BY ic.relname`,
    [schema],
  );
}

/** Can this index be the arbiter of ON CONFLICT (user_id) WHERE user_id IS NOT NULL? */
function equivalent(r: IndexRow): boolean {
  const predicate = r.predicate === null ? null : r.predicate.toLowerCase().replace(/[\s()"]/g, '');
  return (
    r.is_unique && r.is_valid && r.is_ready && r.is_immediate &&
    r.keys.length === 1 && r.keys[0] === 'user_id' &&
    (predicate === null || predicate === 'user_idisnotnull')
  );
}

function tsm(schema: string, command: string): string {
  return schema === 'public' ? `tsm ${command}` : `tsm ${command} --schema ${/^[A-Za-z0-9_.-]+$/.test(schema) ? schema : `'${schema}'`}`;
}

export async function preflight(db: ReadDb, schema: string): Promise<void> {
  if (!(await tableExists(db, schema))) return; // 0001 creates it; the index is then built on an empty table
  const all = await indexes(db, schema);
  if (all.some(equivalent)) return;

  const named = all.find((r) => r.name === NAME);
  if (!named) {
    const [clash] = await db.select(
      `SELECT c.relkind::text AS kind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1::text AND c.relname = $2::text`,
      [schema, NAME],
    );
    if (clash) throw new Error(`a relation named ${schema}.${NAME} (relkind ${clash.kind}) exists and is not an index of telegram_sessions; rename it`);
  } else if (named.building_pid !== null) {
    throw new Error(`an index build of ${NAME} is in progress (pid ${named.building_pid}); wait for it to finish, then run \`${tsm(schema, 'migrate up')}\` again`);
  } else if (named.is_valid) {
    throw new Error(
      `an index named ${NAME} exists but cannot serve ON CONFLICT (user_id) (${describe(named)}); rename or drop it, then run \`${tsm(schema, 'migrate up')}\` again`,
    );
  }

  const t = `${ident(schema)}.telegram_sessions`;
  const [dups] = await db.select(
    `SELECT count(*)::bigint AS users, coalesce(sum(n), 0)::bigint AS rows,
            (array_agg(format('%s ×%s', to_json(user_id), n) ORDER BY n DESC, user_id))[1:3] AS worst
       FROM (SELECT user_id, count(*) AS n FROM ${t} WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) d`,
  );
  const users = Number(dups.users);
  if (users > 0) {
    throw new Error(
      `${users} user_id${users === 1 ? ' has' : 's have'} more than one row (${dups.rows} rows in all; worst: ${(dups.worst as string[]).join(', ')}): ` +
        `the unique index cannot be built; run \`${tsm(schema, 'dedupe')}\` (it archives the extra rows, nothing is deleted), then \`${tsm(schema, 'migrate up')}\` again`,
    );
  }
}

function describe(r: IndexRow): string {
  if (!r.is_unique) return 'not unique';
  if (r.keys.length !== 1 || r.keys[0] !== 'user_id') return `on (${r.keys.join(', ')})`;
  if (!r.is_immediate) return 'DEFERRABLE';
  return `partial WHERE ${r.predicate}`;
}

export async function up(pgm: MigrationBuilder): Promise<void> {
  pgm.noTransaction();
  const schema = await targetSchema(pgm.db);
  await preflight(pgm.db, schema);
  const index = `${ident(schema)}.${ident(NAME)}`;
  const all = (await tableExists(pgm.db, schema)) ? await indexes(pgm.db, schema) : [];
  const existing = all.find(equivalent);
  if (existing) {
    await pgm.db.query(`-- ${existing.name} is a valid unique index on (user_id)${existing.predicate ? ` WHERE ${existing.predicate}` : ''}: nothing to build`);
    return;
  }
  if (all.some((r) => r.name === NAME)) {
    // preflight let it through: INVALID and no build working on it.
    await pgm.db.query(`-- ${NAME} is INVALID (left by a failed concurrent build): dropping it, then rebuilding`);
    await pgm.db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`);
  }
  try {
    await pgm.db.query(`CREATE UNIQUE INDEX CONCURRENTLY ${ident(NAME)} ON ${ident(schema)}.telegram_sessions (user_id) WHERE user_id IS NOT NULL`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== '42P07') {
      // The failed build left an INVALID index: drop it now so nothing trips over it. If this
      // drop cannot get its lock either, the next attempt (or the next `up`) drops it first.
      const [left] = await pgm.db
        .select(`SELECT i.indisvalid AS valid FROM pg_catalog.pg_index i WHERE i.indexrelid = to_regclass($1::text)`, [index])
        .catch(() => []);
      if (left && left.valid === false) await pgm.db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`).catch(() => {});
    }
    if (code === '23505') {
      const detail = (err as { detail?: string }).detail;
      throw new Error(
        `duplicate user_ids appeared while the index was being built${detail ? ` (${detail})` : ''}: ` +
          `run \`${tsm(schema, 'dedupe')}\`, then \`${tsm(schema, 'migrate up')}\` again`,
      );
    }
    throw err;
  }
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.noTransaction();
  const schema = await targetSchema(pgm.db);
  const all = (await tableExists(pgm.db, schema)) ? await indexes(pgm.db, schema) : [];
  if (!all.some((r) => r.name === NAME)) {
    const other = all.find(equivalent);
    pgm.sql(`-- no index named ${NAME}: nothing to drop${other ? ` (${other.name}, not created by this migration, is left in place)` : ''}`);
    return;
  }
  pgm.sql(`DROP INDEX CONCURRENTLY IF EXISTS ${ident(schema)}.${ident(NAME)}`);
}
