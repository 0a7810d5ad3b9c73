/**
 * `tsm migrate create <name>`: a new, empty TypeScript migration in the migrations folder, numbered
 * after both the folder's own files and tsm's shipped migrations (a team's folder holds a copy of
 * tsm's migrations plus its own, all recorded in the same tsm_migrations table).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
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
 * a statement alone). Every statement runs with lock_timeout (--lock-timeout); when a lock is not
 * granted in time the whole migration is rolled back and run again, so make it safe to repeat:
 * look at the current state first (pgm.db.select) and use IF [NOT] EXISTS.
 * The target schema is current_setting('tsm.schema'); qualify every table with it.
 * Optional: export async function preflight(db, schema) — a read-only check that throws a clear
 * message before \`up\` touches anything.
 */
import type { MigrationBuilder } from 'node-pg-migrate';

export async function up(pgm: MigrationBuilder): Promise<void> {
  void pgm; // pgm.sql(\`ALTER TABLE …\`);
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  void pgm; // reverse up(); refuse (throw) rather than drop data
}
`;
}

export async function createMigration(rawName: string | undefined, dirOption: string | undefined): Promise<Created> {
  const name = (rawName ?? '').trim();
  if (!/^[a-z0-9][a-z0-9_-]{0,99}$/i.test(name)) {
    throw new UsageError(`migration name '${name}': use letters, digits, '_' and '-' (e.g. add_device_column)`);
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
