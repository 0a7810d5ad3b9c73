/**
 * Partitioned telegram_sessions, as doctor sees it: the partition tree (from the `table` check's
 * facts), whether its partition keys allow a unique index on user_id alone, and the statements
 * that build or finish a unique index on a partitioned table the way PostgreSQL allows without
 * blocking writers (CREATE INDEX CONCURRENTLY is refused on a partitioned table):
 *
 *   CREATE UNIQUE INDEX parent_idx ON ONLY parent (…);             -- invalid until complete
 *   CREATE UNIQUE INDEX CONCURRENTLY part_idx ON partition (…);    -- per leaf partition
 *   ALTER INDEX parent_idx ATTACH PARTITION part_idx;               -- valid once all are attached
 *
 * A partition that is itself partitioned gets the same three steps one level down.
 */
import { createHash } from 'node:crypto';
import type { Facts, Partition } from './types.js';
import { TABLE, sqlName, sqlQualified, shownRel } from './util.js';

/** A table of the tree: telegram_sessions itself or one of its partitions. */
export interface Rel {
  readonly schema: string;
  readonly name: string;
  /** Its own partition key (`HASH (user_id)`), or null for a leaf. */
  readonly key: string | null;
  readonly keyColumns: readonly (string | null)[] | null;
  readonly children: Rel[];
}

/**
 * SQL: the recursive CTE `tree(relid, parentrelid, level)` of `<root>` (level 0) and its partitions at every
 * level, from pg_inherits (plain catalog reads: unlike pg_partition_tree() it takes no lock, so doctor
 * never waits behind a migration's ACCESS EXCLUSIVE lock to read the catalog). Use after `WITH RECURSIVE`.
 */
export const treeCte = (root: string): string => `tree(relid, parentrelid, level) AS (
  SELECT ${root}, NULL::oid, 0
  UNION ALL
  SELECT h.inhrelid, h.inhparent, tree.level + 1
    FROM tree
    JOIN pg_catalog.pg_inherits h ON h.inhparent = tree.relid
    JOIN pg_catalog.pg_class hc   ON hc.oid = h.inhrelid AND hc.relispartition
)`;

/** SQL: the planner's rows of relation `oid`: reltuples, or the statistics' live tuples when never vacuumed or analyzed (-1). */
export const rowsOf = (rel: string): string =>
  `CASE WHEN ${rel}.reltuples >= 0 THEN ${rel}.reltuples::float8 ELSE pg_catalog.pg_stat_get_live_tuples(${rel}.oid)::float8 END`;

/** The partition tree rooted at telegram_sessions (a lone leaf when it is not partitioned). */
export function partitionTree(facts: Facts, schema: string): Rel {
  const root: Rel = {
    schema,
    name: TABLE,
    key: facts.partitioning?.key ?? null,
    keyColumns: facts.partitioning?.columns ?? null,
    children: [],
  };
  const byName = new Map<string, Rel>([[relKey(schema, TABLE), root]]);
  for (const p of facts.partitions) {
    const rel: Rel = { schema: p.schema, name: p.name, key: p.key, keyColumns: p.keyColumns, children: [] };
    byName.set(relKey(p.schema, p.name), rel);
    byName.get(relKey(p.parentSchema, p.parentName))?.children.push(rel);
  }
  return root;
}

export const relKey = (schema: string, name: string): string => JSON.stringify([schema, name]);

export const isPartitioned = (rel: Rel): boolean => rel.key !== null;

/** Every leaf of the tree. */
export function leaves(rel: Rel): Rel[] {
  return isPartitioned(rel) ? rel.children.flatMap(leaves) : [rel];
}

/** The partitioned tables of the tree whose key is not user_id alone, with their key: a unique index on user_id is impossible. */
export function keyProblems(root: Rel): { rel: Rel; key: string }[] {
  const out: { rel: Rel; key: string }[] = [];
  const walk = (rel: Rel): void => {
    if (!isPartitioned(rel)) return;
    const cols = rel.keyColumns ?? [];
    if (cols.length === 0 || cols.some((c) => c !== 'user_id')) out.push({ rel, key: rel.key ?? '?' });
    rel.children.forEach(walk);
  };
  walk(root);
  return out;
}

/** Levels of partitioning below telegram_sessions (0: not partitioned). */
export function depth(facts: Facts): number {
  return facts.partitions.reduce((d, p: Partition) => Math.max(d, p.level), 0);
}

/** Why a unique index on user_id alone cannot exist, or null (not partitioned, or partitioned by user_id at every level). */
export function userIdKeyProblem(facts: Facts, schema: string): string | null {
  if (!facts.partitioning) return null;
  const problems = keyProblems(partitionTree(facts, schema));
  if (problems.length === 0) return null;
  const what = problems.map((p) => `${p.rel.name === TABLE && p.rel.schema === schema ? TABLE : `its partition ${shownRel(p.rel.schema, p.rel.name, schema)}`} is partitioned by ${p.key}`);
  return (
    `${what.join('; ')}: a unique index on a partitioned table must contain every partition-key column, ` +
    'so a unique index on user_id alone is impossible and INSERT … ON CONFLICT (user_id) fails with 42P10'
  );
}

/** The options when the partition key rules out a unique user_id, as remedy lines. */
export function keyProblemOptions(schema: string, upCommand: string): { commands: string[]; sql: string[]; lead: string } {
  return {
    commands: [
      'option 1: re-partition by user_id: a new table PARTITION BY HASH (user_id) (or LIST/RANGE on user_id), copy the rows, swap the names;',
      'option 2: keep this table and hold the uniqueness in an unpartitioned lookup table user_id → session id, written in the same',
      'transaction as the session (the upsert goes through it).',
      `${upCommand} refuses this table before changing anything.`,
    ],
    sql: [
      `CREATE TABLE ${sqlQualified(schema, 'telegram_session_users')} (user_id varchar(255) PRIMARY KEY, session_id uuid NOT NULL);`,
    ],
    lead: 'the lookup table of option 2:',
  };
}

/** PostgreSQL's limit on identifiers, in bytes. */
const MAX_NAME_BYTES = 63;

function truncateBytes(s: string, max: number): string {
  let out = '';
  for (const ch of s) {
    if (Buffer.byteLength(out + ch, 'utf8') > max) break;
    out += ch;
  }
  return out;
}

/**
 * The name of a partition's index under a parent index, the way `tsm migrate up` names it: the
 * parent index's suffix after its table's name (`telegram_sessions_user_id_unique` on
 * `telegram_sessions` → `_user_id_unique`) appended to the partition's name; `_2`, `_3`, … when
 * `taken`; at most 63 bytes (a longer partition name is cut and followed by 8 hex digits of its
 * SHA-256, so two long names with the same beginning stay apart).
 */
export function childIndexName(partition: string, parentIndex: string, parentTable: string, taken: ReadonlySet<string> = new Set()): string {
  const suffix = parentIndex.startsWith(parentTable) && parentIndex.length > parentTable.length ? parentIndex.slice(parentTable.length) : `_${parentIndex}`;
  for (let attempt = 1; ; attempt++) {
    const tail = attempt === 1 ? suffix : `${suffix}_${attempt}`;
    const full = partition + tail;
    const name =
      Buffer.byteLength(full, 'utf8') <= MAX_NAME_BYTES
        ? full
        : `${truncateBytes(partition, MAX_NAME_BYTES - Buffer.byteLength(tail, 'utf8') - 9)}_${createHash('sha256').update(partition).digest('hex').slice(0, 8)}${tail}`;
    if (!taken.has(name)) return name;
  }
}

/** `USING btree (user_id) WHERE (user_id IS NOT NULL)`: the part of pg_get_indexdef after the table (quote-aware). */
export function indexSpec(definition: string): string | null {
  let quoted = false;
  for (let i = 0; i < definition.length; i++) {
    const c = definition[i];
    if (c === '"') quoted = !quoted;
    else if (!quoted && definition.startsWith(' USING ', i)) return definition.slice(i + 1);
  }
  return null;
}

/** The spec of tsm's unique index. */
export const UNIQUE_SPEC = 'USING btree (user_id) WHERE (user_id IS NOT NULL)';

/**
 * Statements that build index `name` (unique when `unique`) on `rel` without blocking writers:
 * CONCURRENTLY on a leaf; ON ONLY + each partition + ATTACH on a partitioned table.
 */
export function buildSteps(rel: Rel, name: string, spec: string, unique: boolean, taken: Set<string> = new Set()): string[] {
  const u = unique ? 'UNIQUE ' : '';
  taken.add(name);
  if (!isPartitioned(rel)) return [`CREATE ${u}INDEX CONCURRENTLY ${sqlName(name)} ON ${sqlQualified(rel.schema, rel.name)} ${spec};`];
  const steps = [`CREATE ${u}INDEX ${sqlName(name)} ON ONLY ${sqlQualified(rel.schema, rel.name)} ${spec};`];
  for (const child of rel.children) {
    const childName = childIndexName(child.name, name, rel.name, taken);
    steps.push(...buildSteps(child, childName, spec, unique, taken));
    steps.push(attachSql(rel.schema, name, child.schema, childName));
  }
  return steps;
}

export function attachSql(parentSchema: string, parentIndex: string, childSchema: string, childIndex: string): string {
  return `ALTER INDEX ${sqlQualified(parentSchema, parentIndex)} ATTACH PARTITION ${sqlQualified(childSchema, childIndex)};`;
}
