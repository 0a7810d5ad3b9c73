/**
 * `tsm migrate create <name>`: a new, empty TypeScript migration in the migrations folder, numbered
 * after both the folder's own files and tsm's shipped migrations (a team's folder holds a copy of
 * tsm's migrations plus its own, all recorded in the same tsm_migrations table).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { controlCharacter } from '../db/ident.js';
import { FailError, UsageError } from '../errors.js';
import { SHIPPED_DIR, listMigrations } from './files.js';

export interface Created {
  name: string;
  path: string;
  /** The folder does not (yet) hold tsm's own migrations: `up --migrations-dir` would then miss them. */
  has_shipped: boolean;
}

function prefixOf(name: string): number {
  const m = /^(\d+)/.exec(name);
  return m ? Number(m[1]) : 0;
}

async function namesIn(dir: string): Promise<string[]> {
  try {
    return (await listMigrations(dir)).map((m) => m.name);
  } catch (err) {
    if (err instanceof FailError && /does not exist/.test(err.message)) return [];
    throw err;
  }
}

export function template(name: string, file: string): string {
  return `/**
 * ${file}: (what this migration changes, and why)
 *
 * Applied by \`tsm migrate up --migrations-dir <this folder>\` in its own transaction, together with
 * its row in tsm_migrations (call pgm.noTransaction() for CREATE INDEX CONCURRENTLY, and send such
 * a statement alone with pgm.db.query). Every statement runs with lock_timeout (--lock-timeout);
 * when a lock is not granted in time the whole migration is rolled back and run again, so make it
 * safe to repeat: look at the current state first (pgm.db.select) and use IF [NOT] EXISTS.
 *
 * Names and values: ctx.schema is the target schema (--schema); quote it and every name read
 * from the catalog with ident() wherever it reaches SQL, and pass values as parameters
 * (pgm.db.select(sql, [value])). Report what the migration decided with ctx.note(text): tsm
 * shows it; never put such text into SQL, not even into a comment.
 * Optional: export async function preflight(db, schema, ctx) — a read-only check that throws a
 * clear message before \`up\` touches anything.
 */
import type { MigrationBuilder } from 'node-pg-migrate';

/** What tsm passes besides pgm (plain node-pg-migrate passes nothing: ctx is then undefined). */
interface MigrationContext {
  readonly schema: string;
  note(text: string): void;
  command(args: string): string;
}

const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

async function targetSchema(pgm: MigrationBuilder, ctx: MigrationContext | undefined): Promise<string> {
  if (ctx) return ctx.schema;
  const [row] = await pgm.db.select('SELECT current_schema() AS s');
  return String(row?.s ?? 'public');
}

// ctx is a rest parameter on purpose: node-pg-migrate treats a two-parameter up() as callback style.
export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm, ctx);
  void ident(schema); // pgm.sql(\`ALTER TABLE \${ident(schema)}.telegram_sessions …\`);
}

export async function down(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void> {
  const schema = await targetSchema(pgm, ctx);
  void ident(schema); // reverse up(); refuse (throw) rather than drop data
}
`;
}

export async function createMigration(rawName: string | undefined, dirOption: string | undefined): Promise<Created> {
  const name = (rawName ?? '').trim();
  if (!/^[a-z0-9][a-z0-9_-]{0,99}$/i.test(name)) {
    const shown = controlCharacter(name) === null ? `'${name}'` : JSON.stringify(name);
    throw new UsageError(`migration name ${shown}: use letters, digits, '_' and '-' (e.g. add_device_column)`);
  }
  const dir = resolve(process.cwd(), dirOption ?? 'migrations');
  const here = await namesIn(dir);
  const shipped = await namesIn(SHIPPED_DIR);
  const next = Math.max(0, ...here.map(prefixOf), ...shipped.map(prefixOf)) + 1;
  const width = Math.max(4, ...here.map((n) => /^(\d+)/.exec(n)?.[1]?.length ?? 0));
  const migration = `${String(next).padStart(width, '0')}_${name}`;
  const path = join(dir, `${migration}.ts`);
  await mkdir(dir, { recursive: true });
  try {
    await writeFile(path, template(name, basename(path)), { flag: 'wx' });
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') throw new FailError(`${path} already exists`);
    throw new FailError(`cannot write ${path}: ${(err as Error).message}`);
  }
  return { name: migration, path, has_shipped: shipped.every((n) => here.includes(n)) };
}
