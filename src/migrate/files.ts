/**
 * The migration files: where the shipped ones live, which files in a folder are migrations (the
 * same listing and order node-pg-migrate uses), and each file's checksum.
 *
 * Checksum = SHA-256 of the file node-pg-migrate loads (for the shipped migrations: the compiled
 * `dist/migrations/*.js`), line endings normalised to LF. It describes the code that actually ran
 * against the database: the `.ts` source is not what executes, and a hand-edited `.js` (say,
 * patched inside node_modules) would go unnoticed by a checksum of the source. The price: a
 * different TypeScript compiler that emits different JavaScript for an unchanged source reads as
 * "modified" — the safe direction (tsc is pinned in package.json).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, extname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlCharacter } from '../db/ident.js';
import { FailError } from '../errors.js';

/** dist/src/migrate/files.js → dist/migrations/ (and src/migrate/files.ts → migrations/ when run from source). */
export const SHIPPED_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/**
 * node-pg-migrate's ignorePattern (matched against the whole file name): dotfiles, TypeScript
 * declarations that tsc emits next to the compiled migrations, and anything that is not a
 * JavaScript, TypeScript or SQL file (README.md, source maps).
 */
export const IGNORE_PATTERN = String.raw`(\..*|.*\.d\.[cm]?ts|(?!.*\.(?:[cm]?js|[cm]?ts|sql)$).*)`;

export interface MigrationFile {
  /** node-pg-migrate's name: the file name without its extension, e.g. 0004_user_id_unique_index. */
  name: string;
  path: string;
  /** SHA-256 (hex) of the file, CRLF → LF. */
  checksum: string;
}

export function checksumOf(content: string): string {
  return createHash('sha256').update(content.replace(/\r\n/g, '\n'), 'utf8').digest('hex');
}

export function resolveDir(dir: string | undefined): string {
  return dir === undefined ? SHIPPED_DIR : resolve(process.cwd(), dir);
}

/** The migrations in `dir`, in the order node-pg-migrate applies them. */
export async function listMigrations(dir: string): Promise<MigrationFile[]> {
  const { getMigrationFilePaths } = await import('node-pg-migrate/migration');
  let paths: string[];
  try {
    paths = await getMigrationFilePaths(dir, { ignorePattern: IGNORE_PATTERN, logger: silentLogger });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') throw new FailError(`migrations folder ${dir} does not exist`);
    if (code === 'ENOTDIR') throw new FailError(`migrations folder ${dir} is not a folder`);
    throw new FailError(`cannot list the migrations in ${dir}: ${(err as Error).message}`);
  }
  const files: MigrationFile[] = [];
  const seen = new Map<string, string>();
  for (const path of paths) {
    const name = basename(path, extname(path));
    // A name is data (a bind parameter in tsm_migrations), but one that could break a line of
    // output, or that the history column cannot hold, is refused outright.
    const cc = controlCharacter(name);
    if (cc !== null) throw new FailError(`migration file ${JSON.stringify(basename(path))} in ${dir}: its name contains a control character (${cc}); rename it`);
    if (name.length > 255) throw new FailError(`migration file ${basename(path).slice(0, 40)}… in ${dir}: its name is longer than 255 characters; rename it`);
    const other = seen.get(name);
    if (other !== undefined) {
      throw new FailError(`two migration files share the name ${name}: ${basename(other)} and ${basename(path)}`);
    }
    seen.set(name, path);
    files.push({ name, path, checksum: checksumOf(await readFile(path, 'utf8')) });
  }
  return files;
}

/** node-pg-migrate logs through this (errors are reported by tsm itself, once). */
export const silentLogger = {
  debug: (..._args: unknown[]): void => {},
  info: (..._args: unknown[]): void => {},
  warn: (..._args: unknown[]): void => {},
  error: (..._args: unknown[]): void => {},
};
