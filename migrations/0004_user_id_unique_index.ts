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
 * Index names come from the catalog: they are data in notes (ctx.note), never SQL text.
 *
 * down: DROP INDEX CONCURRENTLY of this name only; an equivalent index under another name (a
 * hand fix that made `up` skip) is left alone. No data is lost.
 */
import type { MigrationBuilder } from 'node-pg-migrate';
import type { MigrationContext, ReadDb } from '../src/migrate/context.js';

const NAME = 'telegram_sessions_user_id_unique';
const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
/** A name for messages: as typed when plain, else quoted. */
const shown = (s: string): string => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : ident(s));

/** The target schema: tsm's --schema; plain node-pg-migrate: the first schema of the search_path. */
async function targetSchema(db: ReadDb, ctx: MigrationContext | undefined): Promise<string> {
  if (ctx) return ctx.schema;
  const [row] = await db.select('SELECT pg_catalog.current_schema() AS s');
  if (typeof row?.s !== 'string') throw new Error('no target schema: the search_path names no existing schema');
  return row.s;
}

/** A tsm command to suggest: tsm phrases it (the schema shell-quoted); without tsm, said in words. */
function command(ctx: MigrationContext | undefined, schema: string, args: string): string {
  return ctx ? ctx.command(args) : `tsm ${args}${schema === 'public' ? '' : ` (with --schema set to ${shown(schema)})`}`;
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
  return row?.ok === true;
}

async function indexes(db: ReadDb, schema: string): Promise<IndexRow[]> {
  const rows = await db.select(
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
  return rows.map((r) => ({
    name: String(r.name),
    is_unique: r.is_unique === true,
    is_valid: r.is_valid === true,
    is_ready: r.is_ready === true,
    is_immediate: r.is_immediate === true,
    keys: Array.isArray(r.keys) ? r.keys.map(String) : [],
    predicate: typeof r.predicate === 'string' ? r.predicate : null,
    building_pid: typeof r.building_pid === 'number' ? r.building_pid : null,
  }));
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

export async function preflight(db: ReadDb, schema: string, ctx?: MigrationContext): Promise<void> {
  const tsm = (args: string): string => command(ctx, schema, args);
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
    if (clash) throw new Error(`a relation named ${shown(schema)}.${NAME} (relkind ${String(clash.kind)}) exists and is not an index of telegram_sessions; rename it`);
  } else if (named.building_pid !== null) {
    throw new Error(`an index build of ${NAME} is in progress (pid ${named.building_pid}); wait for it to finish, then run \`${tsm('migrate up')}\` again`);
  } else if (named.is_valid) {
    throw new Error(
      `an index named ${NAME} exists but cannot serve ON CONFLICT (user_id) (${describe(named)}); rename or drop it, then run \`${tsm('migrate up')}\` again`,
    );
  }

  const t = `${ident(schema)}.telegram_sessions`;
  const [dups] = await db.select(
    `SELECT count(*)::bigint AS users, coalesce(sum(n), 0)::bigint AS rows,
            (array_agg(format('%s ×%s', to_json(user_id), n) ORDER BY n DESC, user_id))[1:3] AS worst
       FROM (SELECT user_id, count(*) AS n FROM ${t} WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) d`,
  );
  const users = Number(dups?.users ?? 0);
  if (users > 0) {
    const worst = Array.isArray(dups?.worst) ? dups.worst.map(String) : [];
    throw new Error(
      `${users} user_id${users === 1 ? ' has' : 's have'} more than one row (${String(dups?.rows)} rows in all; worst: ${worst.join(', ')}): ` +
        `the unique index cannot be built; run \`${tsm('dedupe')}\` (it archives the extra rows, nothing is deleted), then \`${tsm('migrate up')}\` again`,
    );
  }
}

function describe(r: IndexRow): string {
  if (!r.is_unique) return 'not unique';
  if (r.keys.length !== 1 || r.keys[0] !== 'user_id') return `on (${r.keys.join(', ')})`;
  if (!r.is_immediate) return 'DEFERRABLE';
  return `partial WHERE ${r.predicate}`;
}

export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  pgm.noTransaction();
  const schema = await targetSchema(pgm.db, ctx);
  await preflight(pgm.db, schema, ctx);
  const index = `${ident(schema)}.${ident(NAME)}`;
  const all = (await tableExists(pgm.db, schema)) ? await indexes(pgm.db, schema) : [];
  const existing = all.find(equivalent);
  if (existing) {
    ctx?.note(`${existing.name} is a valid unique index on (user_id)${existing.predicate ? ` WHERE ${existing.predicate}` : ''}: nothing to build`);
    return;
  }
  if (all.some((r) => r.name === NAME)) {
    // preflight let it through: INVALID and no build working on it.
    ctx?.note(`${NAME} is INVALID (left by a failed concurrent build): dropping it, then rebuilding`);
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
        .select(`SELECT i.indisvalid AS valid FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass($1::text)`, [index])
        .catch(() => []);
      if (left && left.valid === false) await pgm.db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`).catch(() => {});
    }
    if (code === '23505') {
      const detail = (err as { detail?: string }).detail;
      throw new Error(
        `duplicate user_ids appeared while the index was being built${detail ? ` (${detail})` : ''}: ` +
          `run \`${command(ctx, schema, 'dedupe')}\`, then \`${command(ctx, schema, 'migrate up')}\` again`,
        { cause: err },
      );
    }
    throw err;
  }
}

export async function down(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  pgm.noTransaction();
  const schema = await targetSchema(pgm.db, ctx);
  const all = (await tableExists(pgm.db, schema)) ? await indexes(pgm.db, schema) : [];
  if (!all.some((r) => r.name === NAME)) {
    const other = all.find(equivalent);
    ctx?.note(`no index named ${NAME}: nothing to drop${other ? ` (${other.name}, not created by this migration, is left in place)` : ''}`);
    return;
  }
  pgm.sql(`DROP INDEX CONCURRENTLY IF EXISTS ${ident(schema)}.${ident(NAME)}`);
}
