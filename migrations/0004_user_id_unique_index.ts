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
 *     out leaves an INVALID index. tsm runs concurrent index statements under their own, longer
 *     --index-lock-timeout and does not retry them; the leftover is left for the next `up` (a drop
 *     now would wait for the same blocker again) and named in the error. A build that failed
 *     otherwise (duplicates) has its leftover dropped right away.
 *
 * A partitioned telegram_sessions (relkind p): PostgreSQL refuses CREATE INDEX CONCURRENTLY on a
 * partitioned table, and a unique index there must contain every partition-key column. So:
 *   - the key of the table, and of every sub-partitioned partition, must be the column user_id
 *     alone (HASH, LIST or RANGE on user_id); any other key (RANGE on created_at, HASH on
 *     tenant_id, a key with more columns or an expression) makes a unique user_id impossible:
 *     the preflight refuses before anything changes (code partition_key), naming the key and the
 *     two ways out. Foreign-table partitions cannot be indexed: refused too;
 *   - otherwise the index is built the way PostgreSQL allows without blocking writers:
 *       1. CREATE UNIQUE INDEX telegram_sessions_user_id_unique ON ONLY the parent (catalog only;
 *          INVALID until every partition's index is attached);
 *       2. per leaf partition CREATE UNIQUE INDEX CONCURRENTLY <partition>_user_id_unique (a
 *          deterministic name of at most 63 bytes: long partition names are cut and get a hash);
 *       3. ALTER INDEX <parent index> ATTACH PARTITION <partition index>; the parent index
 *          becomes valid with the last one.
 *     A sub-partitioned partition gets its own index ON ONLY, its partitions are built and
 *     attached to it, and it is attached to the parent's index once it is valid (attached in
 *     that order, PostgreSQL validates the upper index without taking ACCESS EXCLUSIVE on it);
 *   - every run plans from the catalog, so it resumes from any point (a crash, Ctrl-C, a failed
 *     partition build, a state half-made by hand): a partition whose index is attached and valid
 *     is skipped; a valid matching index on a partition, under any name, is attached rather than
 *     built again; an INVALID leftover of our name is dropped CONCURRENTLY and rebuilt; an
 *     INVALID index already attached is rebuilt with REINDEX INDEX CONCURRENTLY (it cannot be
 *     dropped while attached) and attached again, which validates it; an invalid parent index
 *     made by hand (ON ONLY, any name) is completed rather than duplicated;
 *   - duplicates: with user_id the partition key, equal user_ids live in one partition; the
 *     preflight counts them in every partition that still needs its index;
 *   - each step is a note, shown as it runs (and by `--dry-run`, before the statement it explains).
 *
 * Index names come from the catalog: they are data in notes (ctx.note), never SQL text.
 *
 * down: DROP INDEX CONCURRENTLY of this name only; an equivalent index under another name (a
 * hand fix that made `up` skip) is left alone. No data is lost. On a partitioned table DROP INDEX
 * CONCURRENTLY is refused, and PostgreSQL has no way to detach a partition's index from the
 * parent index (only detaching the whole partition from the table): the parent index is dropped
 * with a plain DROP INDEX under lock_timeout (a catalog change: it waits for the writes in flight,
 * then holds ACCESS EXCLUSIVE on the partitions for milliseconds), and every partition index
 * attached to it goes with it.
 */
import { createHash } from 'node:crypto';
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

/**
 * A refusal with a stable code for `--json` and what the migration knew (tsm carries both into
 * its error; see MigrationRefusal in src/migrate/context.ts). Plain node-pg-migrate sees an Error.
 */
function refusal(message: string, code: string, data: Record<string, unknown>): Error {
  return Object.assign(new Error(message), { refusal: { code, data } });
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

/** 'r' (a table), 'p' (a partitioned table), another relkind, or null (absent). */
async function tableKind(db: ReadDb, schema: string): Promise<string | null> {
  const [row] = await db.select(
    `SELECT c.relkind::text AS kind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = 'telegram_sessions'`,
    [schema],
  );
  return typeof row?.kind === 'string' ? row.kind : null;
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

/** `user_id IS NOT NULL` (however PostgreSQL prints it) → 'notnull'; none → 'none'; anything else → null. */
function predicateKind(predicate: string | null): 'none' | 'notnull' | null {
  if (predicate === null) return 'none';
  return predicate.toLowerCase().replace(/[\s()"]/g, '') === 'user_idisnotnull' ? 'notnull' : null;
}

/** Can this index be the arbiter of ON CONFLICT (user_id) WHERE user_id IS NOT NULL? */
function equivalent(r: IndexRow): boolean {
  return (
    r.is_unique && r.is_valid && r.is_ready && r.is_immediate &&
    r.keys.length === 1 && r.keys[0] === 'user_id' && predicateKind(r.predicate) !== null
  );
}

export async function preflight(db: ReadDb, schema: string, ctx?: MigrationContext): Promise<void> {
  const kind = await tableKind(db, schema);
  if (kind === null) return; // 0001 creates it; the index is then built on an empty table
  if (kind === 'p') {
    await partitionedPlan(db, schema, ctx);
    return;
  }
  const tsm = (args: string): string => command(ctx, schema, args);
  const all = await indexes(db, schema);
  if (all.some(equivalent)) return;

  const named = all.find((r) => r.name === NAME);
  if (!named) {
    await assertNameFree(db, schema);
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
  assertNoDuplicates(dups, [], ctx, schema);
}

/** A relation named NAME that is not an index of telegram_sessions would make CREATE INDEX fail. */
async function assertNameFree(db: ReadDb, schema: string): Promise<void> {
  const [clash] = await db.select(
    `SELECT c.relkind::text AS kind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1::text AND c.relname = $2::text`,
    [schema, NAME],
  );
  if (clash) throw new Error(`a relation named ${shown(schema)}.${NAME} (relkind ${String(clash.kind)}) exists and is not an index of telegram_sessions; rename it`);
}

/** The duplicates query's row (users, rows, worst[, parts]) → nothing, or the refusal that names `tsm dedupe`. */
function assertNoDuplicates(dups: Record<string, unknown> | undefined, parts: string[], ctx: MigrationContext | undefined, schema: string): void {
  const users = Number(dups?.users ?? 0);
  if (users === 0) return;
  const tsm = (args: string): string => command(ctx, schema, args);
  const worst = Array.isArray(dups?.worst) ? dups.worst.map(String) : [];
  const where = parts.length === 0 ? '' : `, in partition${parts.length === 1 ? '' : 's'} ${parts.map(shown).join(', ')}`;
  throw refusal(
    `${users} user_id${users === 1 ? ' has' : 's have'} more than one row (${String(dups?.rows)} rows in all${where}; worst: ${worst.join(', ')}): ` +
      `the unique index cannot be built; run \`${tsm('dedupe')}\` (it archives the extra rows, nothing is deleted), then \`${tsm('migrate up')}\` again`,
    'duplicates',
    { duplicates: { user_ids: users, rows: Number(dups?.rows ?? 0), ...(parts.length > 0 ? { partitions: parts } : {}) } },
  );
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
  if ((await tableKind(pgm.db, schema)) === 'p') {
    await upPartitioned(pgm, schema, ctx);
    return;
  }
  await preflight(pgm.db, schema, ctx);
  const index = `${ident(schema)}.${ident(NAME)}`;
  const all = (await tableKind(pgm.db, schema)) !== null ? await indexes(pgm.db, schema) : [];
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
    await dropIfInvalid(pgm, index, err);
    throw duplicatesDuringBuild(err, ctx, schema) ?? err;
  }
}

/**
 * After a failed CREATE INDEX CONCURRENTLY: the INVALID index it left is dropped now so nothing
 * trips over it. Not after a lock timeout: the drop would wait for the same blocker (as long
 * again); the next `up` drops it first, and tsm names it in the error. Nor when the name was taken.
 */
async function dropIfInvalid(pgm: MigrationBuilder, qualified: string, err: unknown): Promise<void> {
  const code = (err as { code?: string }).code;
  if (code === '42P07' || code === '55P03') return;
  const [left] = await pgm.db
    .select(`SELECT i.indisvalid AS valid FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass($1::text)`, [qualified])
    .catch(() => []);
  if (left && left.valid === false) await pgm.db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${qualified}`).catch(() => {});
}

function duplicatesDuringBuild(err: unknown, ctx: MigrationContext | undefined, schema: string): Error | null {
  if ((err as { code?: string }).code !== '23505') return null;
  const detail = (err as { detail?: string }).detail;
  return Object.assign(
    new Error(
      `duplicate user_ids appeared while the index was being built${detail ? ` (${detail})` : ''}: ` +
        `run \`${command(ctx, schema, 'dedupe')}\`, then \`${command(ctx, schema, 'migrate up')}\` again`,
      { cause: err },
    ),
    { refusal: { code: 'duplicates', data: {} } },
  );
}

export async function down(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  pgm.noTransaction();
  const schema = await targetSchema(pgm.db, ctx);
  const kind = await tableKind(pgm.db, schema);
  const all = kind !== null ? await indexes(pgm.db, schema) : [];
  if (!all.some((r) => r.name === NAME)) {
    const other = all.find(equivalent);
    ctx?.note(`no index named ${NAME}: nothing to drop${other ? ` (${other.name}, not created by this migration, is left in place)` : ''}`);
    return;
  }
  if (kind === 'p') {
    const [attached] = await pgm.db.select(
      `SELECT count(*)::int AS n FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass($1::text)) t WHERE t.relid <> pg_catalog.to_regclass($1::text)`,
      [`${ident(schema)}.${ident(NAME)}`],
    );
    const n = Number(attached?.n ?? 0);
    ctx?.note(
      `telegram_sessions is partitioned: DROP INDEX CONCURRENTLY is refused on a partitioned index and a partition's index cannot be detached, ` +
        `so ${NAME} is dropped with DROP INDEX under lock_timeout (it waits for the writes in flight, then holds its locks for milliseconds); ` +
        `the ${n} ${n === 1 ? 'index' : 'indexes'} attached to it (partitions' and sub-partitions') go with it`,
    );
    pgm.sql(`DROP INDEX IF EXISTS ${ident(schema)}.${ident(NAME)}`);
    return;
  }
  pgm.sql(`DROP INDEX CONCURRENTLY IF EXISTS ${ident(schema)}.${ident(NAME)}`);
}

// ---------------------------------------------------------------------------------------------
// Partitioned telegram_sessions

/** One relation of the partition tree (pg_partition_tree). */
interface PartTable {
  oid: string;
  parent: string | null;
  level: number;
  schema: string;
  name: string;
  /** r: a leaf table, p: partitioned, f: a foreign table. */
  kind: string;
  /** h / l / r for a partitioned table. */
  strategy: string | null;
  /** `HASH (user_id)`, as pg_get_partkeydef prints it. */
  keyDef: string | null;
  /** The key is the column user_id alone, with its default operator class and collation. */
  keyIsUserId: boolean;
  keyOpclassDefault: boolean;
  keyCollationMatches: boolean;
}

/** One index of a relation of the tree. */
interface PartIndex {
  oid: string;
  table: string;
  schema: string;
  name: string;
  /** i: an index, I: a partitioned index. */
  kind: string;
  unique: boolean;
  valid: boolean;
  ready: boolean;
  immediate: boolean;
  /** btree, key user_id only, no INCLUDE, no expression, NULLS DISTINCT, default opclass and collation. */
  plain: boolean;
  keys: string[];
  predicate: string | null;
  constraint: boolean;
  /** The partitioned index it is attached to, or null. */
  parentIndex: string | null;
  buildingPid: number | null;
}

interface PartState {
  tables: PartTable[];
  indexes: PartIndex[];
  /** `schema\0name` of relations whose names a new index might take. */
  taken: Map<string, string>;
}

const STRATEGY: Record<string, string> = { h: 'HASH', l: 'LIST', r: 'RANGE' };
const SUFFIX = '_user_id_unique';
const NAME_ATTEMPTS = 5;

/** Cut `s` to at most `bytes` UTF-8 bytes, on a character boundary. */
function cutBytes(s: string, bytes: number): string {
  let out = '';
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > bytes) break;
    out += ch;
  }
  return out;
}

/**
 * The name of a partition's index: `<partition>_user_id_unique` (then `_2`, `_3`, … when taken by
 * another relation). At most 63 bytes: a longer partition name is cut and followed by 8 hex digits
 * of its SHA-256, so two long names with the same beginning stay apart. Deterministic.
 */
export function partitionIndexName(table: string, attempt = 1): string {
  const tail = attempt === 1 ? SUFFIX : `${SUFFIX}_${attempt}`;
  const full = table + tail;
  if (Buffer.byteLength(full) <= 63) return full;
  const hash = createHash('sha256').update(table).digest('hex').slice(0, 8);
  return `${cutBytes(table, 63 - Buffer.byteLength(tail) - 9)}_${hash}${tail}`;
}

const key = (schema: string, name: string): string => `${schema}\0${name}`;
const qualified = (schema: string, name: string): string => `${ident(schema)}.${ident(name)}`;

async function readPartState(db: ReadDb, schema: string): Promise<PartState> {
  const root = `${ident(schema)}.telegram_sessions`;
  const tableRows = await db.select(
    `SELECT t.relid::oid::text AS oid, t.parentrelid::oid::text AS parent, t.level, n.nspname::text AS schema, c.relname::text AS name,
            c.relkind::text AS kind, pt.partstrat::text AS strategy,
            CASE WHEN pt.partrelid IS NOT NULL THEN pg_catalog.pg_get_partkeydef(t.relid) END AS key_def,
            coalesce(pt.partnatts = 1 AND a.attnum IS NOT NULL AND pt.partattrs[0] = a.attnum, false) AS key_is_user_id,
            coalesce(oc.opcdefault, false) AS key_opclass_default,
            coalesce(pt.partcollation[0] = a.attcollation, false) AS key_collation_matches
       FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass($1::text)) t
       JOIN pg_catalog.pg_class c ON c.oid = t.relid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = t.relid
       LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = 'user_id' AND NOT a.attisdropped
       LEFT JOIN pg_catalog.pg_opclass oc ON oc.oid = pt.partclass[0]
      ORDER BY t.level, n.nspname, c.relname`,
    [root],
  );
  const tables: PartTable[] = tableRows.map((r) => ({
    oid: String(r.oid),
    parent: typeof r.parent === 'string' ? r.parent : null,
    level: Number(r.level),
    schema: String(r.schema),
    name: String(r.name),
    kind: String(r.kind),
    strategy: typeof r.strategy === 'string' ? r.strategy : null,
    keyDef: typeof r.key_def === 'string' ? r.key_def : null,
    keyIsUserId: r.key_is_user_id === true,
    keyOpclassDefault: r.key_opclass_default === true,
    keyCollationMatches: r.key_collation_matches === true,
  }));
  const indexRows = await db.select(
    `SELECT i.indexrelid::text AS oid, i.indrelid::text AS "table", n.nspname::text AS schema, ic.relname::text AS name,
            ic.relkind::text AS kind, i.indisunique AS unique, i.indisvalid AS valid, i.indisready AS ready, i.indimmediate AS immediate,
            (am.amname = 'btree' AND i.indnatts = 1 AND i.indnkeyatts = 1 AND i.indexprs IS NULL
              AND NOT coalesce((pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)
              AND coalesce(oc.opcdefault, false) AND i.indcollation[0] = a.attcollation) AS plain,
            array(SELECT coalesce(ka.attname::text, '(expression)')
                    FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                    LEFT JOIN pg_catalog.pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = k.attnum AND k.attnum > 0
                   WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS keys,
            pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate,
            EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = i.indexrelid) AS is_constraint,
            (SELECT inh.inhparent::text FROM pg_catalog.pg_inherits inh WHERE inh.inhrelid = i.indexrelid LIMIT 1) AS parent_index,
            (SELECT p.pid FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid LIMIT 1) AS building_pid
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
       JOIN pg_catalog.pg_am am ON am.oid = ic.relam
       LEFT JOIN pg_catalog.pg_opclass oc ON oc.oid = i.indclass[0]
       LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] AND i.indkey[0] > 0
      WHERE i.indrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass($1::text)) t)
      ORDER BY n.nspname, ic.relname`,
    [root],
  );
  const indexes: PartIndex[] = indexRows.map((r) => ({
    oid: String(r.oid),
    table: String(r.table),
    schema: String(r.schema),
    name: String(r.name),
    kind: String(r.kind),
    unique: r.unique === true,
    valid: r.valid === true,
    ready: r.ready === true,
    immediate: r.immediate === true,
    plain: r.plain === true,
    keys: Array.isArray(r.keys) ? r.keys.map(String) : [],
    predicate: typeof r.predicate === 'string' ? r.predicate : null,
    constraint: r.is_constraint === true,
    parentIndex: typeof r.parent_index === 'string' ? r.parent_index : null,
    buildingPid: typeof r.building_pid === 'number' ? r.building_pid : null,
  }));
  // Relations that hold one of the names a new index could take (the parent's and each partition's).
  const wanted: [string, string][] = [[schema, NAME]];
  for (const t of tables) {
    if (t.level === 0) continue;
    for (let a = 1; a <= NAME_ATTEMPTS; a++) wanted.push([t.schema, partitionIndexName(t.name, a)]);
  }
  const takenRows = await db.select(
    `SELECT n.nspname::text AS schema, c.relname::text AS name, c.oid::text AS oid
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE (n.nspname::text, c.relname::text) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    [wanted.map((w) => w[0]), wanted.map((w) => w[1])],
  );
  const taken = new Map(takenRows.map((r) => [key(String(r.schema), String(r.name)), String(r.oid)]));
  return { tables, indexes, taken };
}

/** Unique, immediate, key user_id alone (plain), and a predicate ON CONFLICT … WHERE user_id IS NOT NULL accepts. */
function shapeOk(i: PartIndex): boolean {
  return i.unique && i.immediate && i.plain && predicateKind(i.predicate) !== null;
}

/** The refusals that no step can fix: keys other than user_id, foreign partitions. */
function assertPartitionable(s: PartState, schema: string): void {
  const top = s.tables.find((t) => t.level === 0)!;
  for (const t of s.tables) {
    if (t.kind === 'f') {
      throw refusal(
        `partition ${shown(t.schema)}.${shown(t.name)} of ${shown(schema)}.telegram_sessions is a foreign table: PostgreSQL cannot build a unique index over foreign partitions; ` +
          `move its rows into a local partition, or keep user_id unique in an unpartitioned lookup table (user_id → session id)`,
        'partition_key',
        { partition: { table: `${t.schema}.${t.name}`, kind: 'foreign table' } },
      );
    }
    if (t.kind !== 'p') continue;
    const keyDef = t.keyDef ?? '(unknown key)';
    const where = t === top ? `${shown(schema)}.telegram_sessions is partitioned by ${keyDef}` : `partition ${shown(t.schema)}.${shown(t.name)} of ${shown(schema)}.telegram_sessions is itself partitioned by ${keyDef}`;
    let why: string | null = null;
    if (!t.keyIsUserId) {
      why =
        'a unique index on a partitioned table must contain every partition-key column, so user_id alone cannot be unique there ' +
        '(with user_id plus the key columns it would only be unique per partition)';
    } else if (!t.keyOpclassDefault) {
      why = 'its key uses a non-default operator class, whose equality a unique btree index on user_id cannot enforce';
    } else if (!t.keyCollationMatches) {
      why = "its key uses another collation than the user_id column's, which a unique index on user_id cannot enforce";
    }
    if (why === null) continue;
    throw refusal(
      `${where}: ${why}; options: re-partition by user_id (PARTITION BY HASH (user_id) or LIST (user_id)), ` +
        `or keep this table and keep user_id unique in a separate unpartitioned lookup table (user_id → session id)`,
      'partition_key',
      {
        partition_key: {
          table: `${t.schema}.${t.name}`,
          strategy: STRATEGY[t.strategy ?? ''] ?? t.strategy,
          key: keyDef,
          options: ['re-partition by user_id (HASH or LIST)', 'an unpartitioned lookup table user_id → session id with the unique index'],
        },
      },
    );
  }
}

type StepKind = 'create' | 'drop' | 'build' | 'reindex' | 'attach';

interface Step {
  kind: StepKind;
  /** The table (partition) the step works on. */
  table: PartTable;
  /** The index it creates, drops, rebuilds or attaches (in table.schema). */
  index: string;
  sql: string;
  note: string;
}

interface PartPlan {
  /** An index already covering every partition, or null. */
  done: PartIndex | null;
  /** The parent index's name (existing or to create). */
  parentIndex: string;
  steps: Step[];
  leaves: number;
  /** Leaves whose index is attached and valid already. */
  leavesDone: number;
  /** Leaves that get a CREATE INDEX CONCURRENTLY or REINDEX (the duplicates check reads these). */
  toScan: PartTable[];
  notes: string[];
}

/** The parent index (or a partition's, for sub-partitions) as steps refer to it. */
interface Target {
  schema: string;
  name: string;
  /** null: created by this plan. */
  oid: string | null;
  valid: boolean;
  predicate: 'none' | 'notnull';
}

/**
 * Reads the catalog and decides every step, in order, from the state as it is: what is done is
 * skipped, what can be reused is attached, what is broken is dropped (or rebuilt) and built.
 * Throws the refusals (partition key, a build in progress, duplicates) before anything changes.
 */
async function partitionedPlan(db: ReadDb, schema: string, ctx: MigrationContext | undefined): Promise<PartPlan> {
  const tsm = (args: string): string => command(ctx, schema, args);
  const s = await readPartState(db, schema);
  assertPartitionable(s, schema);
  const top = s.tables.find((t) => t.level === 0)!;
  const leaves = s.tables.filter((t) => t.kind === 'r');
  const plan: PartPlan = { done: null, parentIndex: NAME, steps: [], leaves: leaves.length, leavesDone: 0, toScan: [], notes: [] };
  const onTop = s.indexes.filter((i) => i.table === top.oid);
  const covering = onTop.find((i) => i.valid && i.ready && shapeOk(i)) ?? onTop.find((i) => i.valid && i.ready && equivalentPart(i));
  if (covering) {
    plan.done = covering;
    return plan;
  }

  const named = onTop.find((i) => i.name === NAME);
  let target: Target;
  if (named) {
    if (!(shapeOk(named) || equivalentPart(named))) {
      throw new Error(
        `an index named ${NAME} exists but cannot serve ON CONFLICT (user_id) (${describePart(named)}); rename or drop it, then run \`${tsm('migrate up')}\` again`,
      );
    }
    if (!shapeOk(named) || named.constraint) {
      throw new Error(
        `${NAME} on the partitioned telegram_sessions is INVALID and ${named.constraint ? 'belongs to a constraint' : 'uses a non-default operator class or collation'}: ` +
          `tsm cannot complete it; drop it (DROP INDEX ${qualified(schema, NAME)}), then run \`${tsm('migrate up')}\` again`,
      );
    }
    target = { schema, name: NAME, oid: named.oid, valid: false, predicate: predicateKind(named.predicate)! };
  } else {
    if (s.taken.has(key(schema, NAME))) await assertNameFree(db, schema);
    const hand = onTop.find((i) => i.kind === 'I' && !i.valid && shapeOk(i) && !i.constraint);
    if (hand) {
      target = { schema, name: hand.name, oid: hand.oid, valid: false, predicate: predicateKind(hand.predicate)! };
      plan.parentIndex = hand.name;
      plan.notes.push(`${hand.name} is an INVALID unique index on (user_id) ON ONLY telegram_sessions (made by hand?): completing it rather than building another`);
    } else {
      target = { schema, name: NAME, oid: null, valid: false, predicate: 'notnull' };
      plan.steps.push({
        kind: 'create',
        table: top,
        index: NAME,
        sql: createOnOnly(top, NAME, 'notnull'),
        note: `create ${NAME} ON ONLY ${shown(top.name)} (catalog only, no rows read; INVALID until every partition's index is attached)`,
      });
    }
  }

  const children = (parent: PartTable): PartTable[] => s.tables.filter((t) => t.parent === parent.oid);
  const doneLeaves = (t: PartTable): number => (t.kind === 'r' ? 1 : children(t).reduce((n, c) => n + doneLeaves(c), 0));
  const matches = (i: PartIndex, parent: Target): boolean => shapeOk(i) && !i.constraint && predicateKind(i.predicate) === parent.predicate;

  /** The name for a new index on `t`; an INVALID leftover of that name (ours, unattached) is dropped first. */
  const chooseName = (t: PartTable): { name: string; leftover: PartIndex | null } => {
    for (let a = 1; a <= NAME_ATTEMPTS; a++) {
      const name = partitionIndexName(t.name, a);
      const oid = s.taken.get(key(t.schema, name));
      if (oid === undefined) return { name, leftover: null };
      const idx = s.indexes.find((i) => i.oid === oid);
      if (idx && idx.table === t.oid && idx.kind === 'i' && !idx.valid && idx.parentIndex === null) {
        if (idx.buildingPid !== null) {
          throw new Error(`an index build of ${shown(idx.name)} on ${shown(t.name)} is in progress (pid ${idx.buildingPid}); wait for it to finish, then run \`${tsm('migrate up')}\` again`);
        }
        return { name, leftover: idx };
      }
    }
    throw new Error(
      `the names ${partitionIndexName(t.name, 1)} … ${partitionIndexName(t.name, NAME_ATTEMPTS)} in schema ${shown(t.schema)} are all taken by other relations; rename one, then run \`${tsm('migrate up')}\` again`,
    );
  };

  const visit = (node: PartTable, parent: Target): void => {
    let attachedAny = false;
    const attach = (table: PartTable, index: string, note: string): Step => {
      attachedAny = true;
      return attachStep(table, index, parent, note);
    };
    for (const child of children(node)) {
      const attached = parent.oid === null ? undefined : s.indexes.find((i) => i.table === child.oid && i.parentIndex === parent.oid);
      if (child.kind === 'r') {
        if (attached?.valid) {
          plan.leavesDone++;
          continue;
        }
        if (attached) {
          if (attached.buildingPid !== null) {
            throw new Error(`an index build of ${shown(attached.name)} on ${shown(child.name)} is in progress (pid ${attached.buildingPid}); wait for it to finish, then run \`${tsm('migrate up')}\` again`);
          }
          plan.toScan.push(child);
          plan.steps.push(
            {
              kind: 'reindex',
              table: child,
              index: attached.name,
              sql: `REINDEX INDEX CONCURRENTLY ${qualified(child.schema, attached.name)}`,
              note: `${shown(attached.name)} on ${shown(child.name)} is attached but INVALID (it cannot be dropped while attached): rebuild it with REINDEX INDEX CONCURRENTLY (writers are not blocked)`,
            },
            attach(child, attached.name, `attach ${shown(attached.name)} again, now valid, so ${shown(parent.name)} counts it`),
          );
          continue;
        }
        const reuse = s.indexes.find((i) => i.table === child.oid && i.kind === 'i' && i.valid && i.ready && i.parentIndex === null && matches(i, parent));
        if (reuse) {
          plan.steps.push(attach(child, reuse.name, `${shown(child.name)} already has ${shown(reuse.name)}, a valid unique index on (user_id): attach it to ${shown(parent.name)} (no build)`));
          continue;
        }
        const { name, leftover } = chooseName(child);
        if (leftover) {
          plan.steps.push({
            kind: 'drop',
            table: child,
            index: name,
            sql: `DROP INDEX CONCURRENTLY IF EXISTS ${qualified(child.schema, name)}`,
            note: `${shown(name)} on ${shown(child.name)} is INVALID (left by a failed or interrupted build): drop it, then rebuild`,
          });
        }
        plan.toScan.push(child);
        plan.steps.push(
          {
            kind: 'build',
            table: child,
            index: name,
            sql: `CREATE UNIQUE INDEX CONCURRENTLY ${ident(name)} ON ${qualified(child.schema, child.name)} (user_id)${parent.predicate === 'notnull' ? ' WHERE user_id IS NOT NULL' : ''}`,
            note: `build ${shown(name)} on partition ${shown(child.name)} CONCURRENTLY (writers are not blocked)`,
          },
          attach(child, name, `attach ${shown(name)} to ${shown(parent.name)}`),
        );
        continue;
      }
      // A sub-partitioned partition: its own partitioned index, completed before it is attached.
      if (attached?.valid) {
        plan.leavesDone += doneLeaves(child);
        continue;
      }
      if (attached) {
        visit(child, { schema: child.schema, name: attached.name, oid: attached.oid, valid: false, predicate: parent.predicate });
        continue;
      }
      const reuse = s.indexes.find((i) => i.table === child.oid && i.kind === 'I' && i.parentIndex === null && matches(i, parent));
      let sub: Target;
      if (reuse) {
        sub = { schema: child.schema, name: reuse.name, oid: reuse.oid, valid: reuse.valid, predicate: parent.predicate };
      } else {
        const { name } = chooseName(child);
        sub = { schema: child.schema, name, oid: null, valid: false, predicate: parent.predicate };
        plan.steps.push({
          kind: 'create',
          table: child,
          index: name,
          sql: createOnOnly(child, name, parent.predicate),
          note: `create ${shown(name)} ON ONLY ${shown(child.name)}, itself partitioned by ${child.keyDef ?? 'user_id'} (catalog only)`,
        });
      }
      if (sub.valid) plan.leavesDone += doneLeaves(child);
      else visit(child, sub);
      plan.steps.push(attach(child, sub.name, `attach ${shown(sub.name)} (now covering every partition of ${shown(child.name)}) to ${shown(parent.name)}`));
    }
    // Every partition's index attached and valid, yet the index is not (an attached index was
    // rebuilt by hand, say): attaching one again makes PostgreSQL count them and mark it valid.
    if (!attachedAny && parent.oid !== null && !parent.valid) {
      const again = s.indexes.find((i) => i.parentIndex === parent.oid && i.valid);
      const table = again && s.tables.find((t) => t.oid === again.table);
      if (again && table) {
        plan.steps.push(attach(table, again.name, `every partition of ${shown(node.name)} has its index attached and valid, but ${shown(parent.name)} is not marked valid: attach ${shown(again.name)} again, so PostgreSQL re-counts them`));
      }
    }
  };
  visit(top, target);

  // Duplicates: only where an index is still to be built (a valid unique index rules them out).
  if (plan.toScan.length > 0) {
    const params: string[] = [];
    const parts = plan.toScan.map((t) => {
      params.push(t.name);
      return `SELECT $${params.length}::text AS part, user_id, count(*) AS n FROM ONLY ${qualified(t.schema, t.name)}
                WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1`;
    });
    const [dups] = await db.select(
      `SELECT count(*)::bigint AS users, coalesce(sum(n), 0)::bigint AS rows,
              (array_agg(format('%s ×%s', to_json(user_id), n) ORDER BY n DESC, user_id))[1:3] AS worst,
              array(SELECT DISTINCT x FROM unnest(array_agg(part)) x ORDER BY 1) AS parts
         FROM (${parts.join('\n UNION ALL ')}) d`,
      params,
    );
    assertNoDuplicates(dups, Array.isArray(dups?.parts) ? dups.parts.map(String) : [], ctx, schema);
  }
  return plan;
}

/** Valid for ON CONFLICT, though not in the shape tsm builds (e.g. a non-default collation): counts as done. */
function equivalentPart(i: PartIndex): boolean {
  return i.unique && i.immediate && i.keys.length === 1 && i.keys[0] === 'user_id' && predicateKind(i.predicate) !== null;
}

function describePart(i: PartIndex): string {
  if (!i.unique) return 'not unique';
  if (i.keys.length !== 1 || i.keys[0] !== 'user_id') return `on (${i.keys.join(', ')})`;
  if (!i.immediate) return 'DEFERRABLE';
  return `partial WHERE ${i.predicate}`;
}

function createOnOnly(t: PartTable, name: string, predicate: 'none' | 'notnull'): string {
  return `CREATE UNIQUE INDEX ${ident(name)} ON ONLY ${qualified(t.schema, t.name)} (user_id)${predicate === 'notnull' ? ' WHERE user_id IS NOT NULL' : ''}`;
}

function attachStep(table: PartTable, index: string, parent: Target, note: string): Step {
  return { kind: 'attach', table, index, sql: `ALTER INDEX ${qualified(parent.schema, parent.name)} ATTACH PARTITION ${qualified(table.schema, index)}`, note };
}

async function upPartitioned(pgm: MigrationBuilder, schema: string, ctx: MigrationContext | undefined): Promise<void> {
  const plan = await partitionedPlan(pgm.db, schema, ctx);
  const top = `${shown(schema)}.telegram_sessions`;
  if (plan.done) {
    ctx?.note(`${plan.done.name} is a valid unique index on (user_id)${plan.done.predicate ? ` WHERE ${plan.done.predicate}` : ''} covering every partition: nothing to build`);
    return;
  }
  ctx?.note(
    `${top} is partitioned (${plan.leaves} ${plan.leaves === 1 ? 'partition' : 'partitions'}): the unique index is built per partition, as PostgreSQL allows without blocking writers ` +
      `(ON ONLY the parent, CONCURRENTLY per partition, ATTACH PARTITION)` +
      (plan.leavesDone > 0 ? `; ${plan.leavesDone} of ${plan.leaves} ${plan.leaves === 1 ? 'partition' : 'partitions'} ${plan.leavesDone === 1 ? 'has its' : 'have their'} index attached already` : ''),
  );
  for (const n of plan.notes) ctx?.note(n);
  for (const [i, step] of plan.steps.entries()) {
    const where = `step ${i + 1} of ${plan.steps.length}`;
    ctx?.note(`${where}: ${step.note}`);
    try {
      await pgm.db.query(step.sql);
    } catch (err) {
      if (step.kind === 'build') await dropIfInvalid(pgm, qualified(step.table.schema, step.index), err);
      throw duplicatesDuringBuild(err, ctx, schema) ?? stepFailed(err, `${where} (${step.kind} ${shown(step.index)} on ${shown(step.table.name)})`, ctx, schema);
    }
  }
  if (ctx?.dryRun) {
    ctx.note(`${plan.parentIndex} becomes valid with the last attach`);
    return;
  }
  const [check] = await pgm.db.select(`SELECT i.indisvalid AS valid FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass($1::text)`, [
    qualified(schema, plan.parentIndex),
  ]);
  if (check?.valid !== true) {
    throw new Error(
      `every partition's index is attached, yet ${plan.parentIndex} is still not valid; run \`${command(ctx, schema, 'doctor')}\` to see which partition lacks it, then \`${command(ctx, schema, 'migrate up')}\` again`,
    );
  }
  ctx?.note(`${plan.parentIndex} is valid: every partition's index is attached`);
}

/** The server's error with where it happened; its SQLSTATE is kept (lock failures are retried by tsm). */
function stepFailed(err: unknown, where: string, ctx: MigrationContext | undefined, schema: string): Error {
  const e = err as { code?: unknown; detail?: unknown; message?: unknown };
  const first = String(e.message ?? err).split('\n')[0];
  const again = `the next \`${command(ctx, schema, 'migrate up')}\` continues from there`;
  const out = new Error(`${where}: ${first}; ${again}`, { cause: err });
  // Keep the SQLSTATE (classification, lock retries) and the detail.
  if (typeof e.code === 'string') Object.assign(out, { code: e.code });
  if (typeof e.detail === 'string') Object.assign(out, { detail: e.detail });
  return out;
}
