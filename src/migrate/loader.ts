/**
 * How migration files are loaded. Compiled JavaScript (the shipped migrations) is loaded with
 * Node's own `import()`: no transpiler, no cache files written next to the package. TypeScript
 * migrations (a team's own, from `tsm migrate create`) go through node-pg-migrate's loader (jiti),
 * `.sql` files through node-pg-migrate's SQL loader (`-- up migration` / `-- down migration`).
 * The same modules serve `up`, `down`, the preflight checks and `--dry-run`.
 */
import { pathToFileURL } from 'node:url';
import type { MigrationModule } from './context.js';

export type { MigrationModule, ReadDb } from './context.js';

const NATIVE = ['.js', '.mjs', '.cjs'];

async function importNative(path: string): Promise<MigrationModule> {
  const mod = (await import(pathToFileURL(path).href)) as MigrationModule & { default?: MigrationModule };
  // A CommonJS migration (module.exports = { up, down }) arrives as `default`.
  return typeof mod.up === 'function' || mod.up === false ? mod : (mod.default ?? mod);
}

/** Loads one migration module. */
export async function loadModule(path: string): Promise<MigrationModule> {
  const lower = path.toLowerCase();
  if (NATIVE.some((e) => lower.endsWith(e))) return importNative(path);
  if (lower.endsWith('.sql')) {
    const { sqlMigration } = await import('node-pg-migrate/sqlMigration');
    return (await sqlMigration(path)) as MigrationModule;
  }
  const { jiti } = await import('node-pg-migrate');
  const mod = (await jiti.import(path)) as MigrationModule & { default?: MigrationModule };
  return typeof mod.up === 'function' || mod.up === false ? mod : (mod.default ?? mod);
}
