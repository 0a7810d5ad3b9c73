/**
 * CONTRACT: the state of every migration against `<schema>.tsm_migrations`. Used by
 * `tsm migrate status`, `tsm migrate up` (to refuse modified files) and doctor's `migrations` check.
 * Read-only: catalog lookups and one SELECT on the history table.
 */
import type { Client } from 'pg';
import { earlierRelease } from './earlier.js';
import { SHIPPED_DIR, listMigrations, resolveDir, type MigrationFile } from './files.js';
import { readApplied, readableHistoryState, type AppliedRow } from './history.js';

export type MigrationState = 'applied' | 'pending' | 'modified' | 'missing';

export interface MigrationRow {
  name: string;
  state: MigrationState;
  /** ISO time it was applied, for applied / modified / missing. */
  applied_at: string | null;
  /** SHA-256 recorded when it was applied (null: pending, or applied before tsm recorded checksums). */
  applied_checksum?: string | null;
  /** SHA-256 of the file now (null: missing). */
  checksum?: string | null;
  /**
   * Applied by an earlier tsm release whose copy of this shipped migration differed (its checksum
   * is one that release recorded, see earlier.ts): the release, e.g. "tsm 0.1.0 (build 897b880)".
   */
  applied_by_earlier?: string;
}

export interface MigrationStatus {
  /** false when `<schema>.tsm_migrations` does not exist (schema managed elsewhere, or never migrated). */
  table: boolean;
  migrations: MigrationRow[];
}

/**
 * Files and history side by side: file order first, then applied names that have no file.
 * `shipped` (name → checksum of the file shipped with this tsm) enables the earlier-release
 * checksums: a file that is this tsm's shipped file, recorded with an earlier release's checksum
 * of it, is applied, not modified.
 */
export function compareStatus(files: MigrationFile[], applied: AppliedRow[], shipped: ReadonlyMap<string, string> = new Map()): MigrationRow[] {
  const byName = new Map(applied.map((a) => [a.name, a]));
  const rows: MigrationRow[] = files.map((f) => {
    const a = byName.get(f.name);
    if (!a) return { name: f.name, state: 'pending', applied_at: null, applied_checksum: null, checksum: f.checksum };
    const row: MigrationRow = { name: f.name, state: 'applied', applied_at: a.run_on, applied_checksum: a.checksum, checksum: f.checksum };
    if (a.checksum !== null && a.checksum !== f.checksum) {
      const earlier = shipped.get(f.name) === f.checksum ? earlierRelease(f.name, a.checksum) : null;
      if (earlier === null) row.state = 'modified';
      else row.applied_by_earlier = earlier;
    }
    return row;
  });
  const fileNames = new Set(files.map((f) => f.name));
  for (const a of applied) {
    if (!fileNames.has(a.name)) {
      rows.push({ name: a.name, state: 'missing', applied_at: a.run_on, applied_checksum: a.checksum, checksum: null });
    }
  }
  return rows;
}

let shippedCache: Promise<ReadonlyMap<string, string>> | undefined;

/** name → checksum of the migrations shipped with this tsm. */
export function shippedChecksums(): Promise<ReadonlyMap<string, string>> {
  shippedCache ??= listMigrations(SHIPPED_DIR).then((files) => new Map(files.map((f) => [f.name, f.checksum])));
  return shippedCache;
}

export async function migrationStatus(client: Client, schema: string, dir?: string): Promise<MigrationStatus> {
  const files = await listMigrations(resolveDir(dir));
  const h = await readableHistoryState(client, schema);
  const applied = h.table ? await readApplied(client, schema, h.checksumColumn) : [];
  return { table: h.table, migrations: compareStatus(files, applied, await shippedChecksums()) };
}
