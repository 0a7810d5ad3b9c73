/**
 * How migration files are loaded. Compiled JavaScript (the shipped migrations) is loaded with
 * Node's own `import()`: no transpiler, no cache files written next to the package. TypeScript
 * migrations (a team's own, from `tsm migrate create`) go through node-pg-migrate's default loader
 * (jiti). The same modules serve `up`, `down`, the preflight checks and `--dry-run`.
 */
import { pathToFileURL } from 'node:url';
import type { MigrationBuilder, RunnerOption } from 'node-pg-migrate';

/** The read side of a connection, as migrations see it (`pgm.db.select`). */
export interface ReadDb {
  select(sql: string, values?: unknown[]): Promise<any[]>;
}

/** What a migration module may export. `preflight` is tsm's addition; node-pg-migrate ignores it. */
export interface MigrationModule {
  up?: ((pgm: MigrationBuilder) => Promise<void> | void) | false;
  down?: ((pgm: MigrationBuilder) => Promise<void> | void) | false;
  shorthands?: Record<string, unknown>;
  /** Read-only: throws (with a message for the user) when `up` could not succeed in the current state. */
  preflight?: (db: ReadDb, schema: string) => Promise<void>;
}

const NATIVE = ['.js', '.mjs', '.cjs'];

async function importNative(path: string): Promise<MigrationModule> {
  const mod = (await import(pathToFileURL(path).href)) as MigrationModule & { default?: MigrationModule };
  // A CommonJS migration (module.exports = { up, down }) arrives as `default`.
  return typeof mod.up === 'function' || mod.up === false ? mod : (mod.default ?? mod);
}

export function loaderStrategies(): NonNullable<RunnerOption['migrationLoaderStrategies']> {
  return [
    { extensions: ['.sql'], loader: 'legacySql' },
    {
      extensions: NATIVE,
      loader: async (filePaths: string[]) =>
        Promise.all(filePaths.map(async (p) => ({ id: p, filePaths: [p], actions: (await importNative(p)) as never }))),
    },
    { extensions: ['.ts', '.mts', '.cts'], loader: 'default' },
  ];
}

/** Loads one migration module outside the runner (preflight checks, dry-run). */
export async function loadModule(path: string): Promise<MigrationModule> {
  const lower = path.toLowerCase();
  if (NATIVE.some((e) => lower.endsWith(e))) return importNative(path);
  if (lower.endsWith('.sql')) {
    const { sqlMigration } = await import('node-pg-migrate/sqlMigration');
    return (await sqlMigration(path)) as MigrationModule;
  }
  const { jiti } = await import('node-pg-migrate');
  return (await jiti.import(path)) as MigrationModule;
}
