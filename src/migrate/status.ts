/**
 * CONTRACT (stub until the migrate issue lands): the state of every shipped migration against
 * `<schema>.tsm_migrations`. Used by `tsm migrate status` and doctor's `migrations` check.
 */
import type { Client } from 'pg';

export type MigrationState = 'applied' | 'pending' | 'modified' | 'missing';

export interface MigrationRow {
  name: string;
  state: MigrationState;
  /** ISO time it was applied, for applied / modified / missing. */
  applied_at: string | null;
}

export interface MigrationStatus {
  /** false when `<schema>.tsm_migrations` does not exist (schema managed elsewhere, or never migrated). */
  table: boolean;
  migrations: MigrationRow[];
}

export async function migrationStatus(client: Client, schema: string, dir?: string): Promise<MigrationStatus> {
  void client;
  void schema;
  void dir;
  return { table: false, migrations: [] };
}
