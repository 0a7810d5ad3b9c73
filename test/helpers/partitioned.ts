/**
 * Partitioned telegram_sessions for the test/partition-*.test.ts files (issue 11), written as plain
 * SQL so a test never depends on the code under test to set itself up, and a reader of the whole
 * partition tree's indexes.
 *
 * The tables are the incident's pre-fix table (no unique index, no diagnostic columns), without a
 * primary key on id: a unique index on a partitioned table must contain the partition key, so a
 * table partitioned by user_id cannot have PRIMARY KEY (id).
 */
import type { TestDatabase } from './db.js';
import { PRE_FIX_COLUMNS, q } from './fixtures.js';

export type Layout =
  /** HASH (user_id), `parts` partitions telegram_sessions_p0 … */
  | 'hash'
  /** LIST (user_id): u-1 … u-10, u-11 … u-20, NULL, and a DEFAULT partition for the rest. */
  | 'list'
  /** HASH (user_id) whose partition p1 is itself partitioned by LIST (user_id) (two levels). */
  | 'hash-sub-list'
  /** HASH (user_id) whose partition p1 is itself partitioned by RANGE (created_at): impossible. */
  | 'hash-sub-range'
  /** Keys that make a unique user_id impossible. */
  | 'range-created'
  | 'hash-tenant'
  | 'hash-user-tenant';

/** The SQL that creates schema.telegram_sessions with the given layout (the schema included). */
export function partitionedPreFix(schema: string, layout: Layout, parts = 4): string {
  const s = q(schema);
  const t = `${s}.telegram_sessions`;
  const p = (name: string): string => `${s}.${q(name)}`;
  const out = [`CREATE SCHEMA IF NOT EXISTS ${s};`];
  const hashParts = (parent: string, prefix: string, n: number): string[] =>
    Array.from({ length: n }, (_, i) => `CREATE TABLE ${p(`${prefix}${i}`)} PARTITION OF ${parent} FOR VALUES WITH (MODULUS ${n}, REMAINDER ${i});`);
  const inList = (from: number, to: number): string => Array.from({ length: to - from + 1 }, (_, i) => `'u-${from + i}'`).join(', ');
  switch (layout) {
    case 'hash':
      out.push(`CREATE TABLE ${t} (${PRE_FIX_COLUMNS}) PARTITION BY HASH (user_id);`, ...hashParts(t, 'telegram_sessions_p', parts));
      break;
    case 'list':
      out.push(
        `CREATE TABLE ${t} (${PRE_FIX_COLUMNS}) PARTITION BY LIST (user_id);`,
        `CREATE TABLE ${p('telegram_sessions_a')} PARTITION OF ${t} FOR VALUES IN (${inList(1, 10)});`,
        `CREATE TABLE ${p('telegram_sessions_b')} PARTITION OF ${t} FOR VALUES IN (${inList(11, 20)});`,
        `CREATE TABLE ${p('telegram_sessions_pending')} PARTITION OF ${t} FOR VALUES IN (NULL);`,
        `CREATE TABLE ${p('telegram_sessions_rest')} PARTITION OF ${t} DEFAULT;`,
      );
      break;
    case 'hash-sub-list':
    case 'hash-sub-range':
      out.push(
        `CREATE TABLE ${t} (${PRE_FIX_COLUMNS}) PARTITION BY HASH (user_id);`,
        `CREATE TABLE ${p('telegram_sessions_p0')} PARTITION OF ${t} FOR VALUES WITH (MODULUS 2, REMAINDER 0);`,
        `CREATE TABLE ${p('telegram_sessions_p1')} PARTITION OF ${t} FOR VALUES WITH (MODULUS 2, REMAINDER 1) PARTITION BY ${
          layout === 'hash-sub-list' ? 'LIST (user_id)' : 'RANGE (created_at)'
        };`,
        layout === 'hash-sub-list'
          ? `CREATE TABLE ${p('telegram_sessions_p1_a')} PARTITION OF ${p('telegram_sessions_p1')} FOR VALUES IN (${inList(1, 50)});`
          : `CREATE TABLE ${p('telegram_sessions_p1_old')} PARTITION OF ${p('telegram_sessions_p1')} FOR VALUES FROM (MINVALUE) TO ('2000-01-01');`,
        `CREATE TABLE ${p('telegram_sessions_p1_rest')} PARTITION OF ${p('telegram_sessions_p1')} DEFAULT;`,
      );
      break;
    case 'range-created':
      out.push(
        `CREATE TABLE ${t} (${PRE_FIX_COLUMNS}, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);`,
        `CREATE TABLE ${p('telegram_sessions_old')} PARTITION OF ${t} FOR VALUES FROM (MINVALUE) TO ('2024-01-01');`,
        `CREATE TABLE ${p('telegram_sessions_new')} PARTITION OF ${t} FOR VALUES FROM ('2024-01-01') TO (MAXVALUE);`,
      );
      break;
    case 'hash-tenant':
      out.push(`CREATE TABLE ${t} (${PRE_FIX_COLUMNS}) PARTITION BY HASH (tenant_id);`, ...hashParts(t, 'telegram_sessions_p', parts));
      break;
    case 'hash-user-tenant':
      out.push(`CREATE TABLE ${t} (${PRE_FIX_COLUMNS}) PARTITION BY HASH (user_id, tenant_id);`, ...hashParts(t, 'telegram_sessions_p', parts));
      break;
  }
  return out.join('\n');
}

/** `n` rows for users u-1 … u-n (sessions of 100 characters), `pending` rows with a NULL user_id, `dupUsers` extra rows for u-1 … */
export async function seedPartitioned(db: TestDatabase, schema: string, n: number, opts: { pending?: number; dupUsers?: number } = {}): Promise<void> {
  await db.sql(
    `INSERT INTO ${q(schema)}.telegram_sessions (tenant_id, user_id, session_string_enc, key_id, status)
     SELECT 't-1', 'u-' || g, repeat(md5(g::text), 3) || 'abcd', 'k1', 'active' FROM generate_series(1, $1::int) g
     UNION ALL SELECT 't-1', NULL, NULL, NULL, 'pending' FROM generate_series(1, $2::int) g
     UNION ALL SELECT 't-1', 'u-' || g, repeat(md5('dup' || g), 3) || 'abcd', 'k1', 'active' FROM generate_series(1, $3::int) g`,
    [n, opts.pending ?? 0, opts.dupUsers ?? 0],
  );
}

export interface TreeIndex {
  /** The table it indexes (schema-less name). */
  table: string;
  name: string;
  valid: boolean;
  partitioned: boolean;
  /** The index it is attached to, or null. */
  parent: string | null;
  oid: number;
}

/** Every index of the partition tree of schema.telegram_sessions, by table then name. */
export async function treeIndexes(db: TestDatabase, schema: string): Promise<TreeIndex[]> {
  const r = await db.sql(
    `SELECT c.relname AS table, ic.relname AS name, i.indisvalid AS valid, ic.relkind = 'I' AS partitioned,
            (SELECT pc.relname FROM pg_inherits inh JOIN pg_class pc ON pc.oid = inh.inhparent WHERE inh.inhrelid = i.indexrelid) AS parent,
            ic.oid::int AS oid
       FROM pg_partition_tree(to_regclass($1)) t
       JOIN pg_index i ON i.indrelid = t.relid
       JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_class ic ON ic.oid = i.indexrelid
      ORDER BY t.level, c.relname, ic.relname`,
    [`${q(schema)}.telegram_sessions`],
  );
  return r.rows as TreeIndex[];
}

/** The leaf partitions of schema.telegram_sessions, by name. */
export async function leaves(db: TestDatabase, schema: string): Promise<string[]> {
  const r = await db.sql(
    `SELECT c.relname AS name FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY 1`,
    [`${q(schema)}.telegram_sessions`],
  );
  return r.rows.map((x) => x.name as string);
}

/**
 * Whether the parent index `name` is valid and every leaf has a valid index attached to it
 * (directly or through a sub-partition's index): what `up` must leave behind.
 */
export async function coverage(db: TestDatabase, schema: string, name = 'telegram_sessions_user_id_unique'): Promise<{ valid: boolean; uncovered: string[] }> {
  const all = await treeIndexes(db, schema);
  const top = all.find((i) => i.name === name && i.partitioned);
  const under = new Set<string>(top ? [top.name] : []);
  for (let grew = true; grew; ) {
    grew = false;
    for (const i of all) {
      if (i.parent !== null && under.has(i.parent) && !under.has(i.name)) {
        under.add(i.name);
        grew = true;
      }
    }
  }
  const covered = new Set(all.filter((i) => !i.partitioned && i.valid && under.has(i.name)).map((i) => i.table));
  return { valid: top?.valid === true, uncovered: (await leaves(db, schema)).filter((l) => !covered.has(l)) };
}

/**
 * A digest of every row's original columns (the ones the pre-fix table has), in id order, and
 * their count: equal before and after means no row was changed, lost or added.
 */
export async function rowsDigest(db: TestDatabase, schema: string): Promise<{ rows: number; md5: string }> {
  const r = await db.sql(
    `SELECT count(*)::int AS rows, coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t.id)), '') AS md5
       FROM (SELECT id, tenant_id, user_id, session_string_enc, key_id, status, created_at, updated_at FROM ${q(schema)}.telegram_sessions) t`,
  );
  return r.rows[0] as { rows: number; md5: string };
}
