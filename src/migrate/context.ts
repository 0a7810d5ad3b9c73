/**
 * What a migration gets from tsm besides node-pg-migrate's MigrationBuilder, and what it may export.
 *
 * A migration's decisions ("an equivalent index exists: nothing to build") are data: it calls
 * `ctx.note(text)` and tsm shows the text (stderr, the human summary, `--json` `steps[].notes`).
 * Nothing a migration notes is ever sent to the server. The target schema is `ctx.schema`, kept
 * in tsm's process (no session setting).
 *
 * Declare the context as a rest parameter so plain node-pg-migrate can still run a copied file
 * (it treats `up.length === 2` as the old callback style):
 *
 *   export async function up(pgm: MigrationBuilder, ...[ctx]: [MigrationContext?]): Promise<void>
 *
 * Without a context (plain node-pg-migrate) a migration falls back to `current_schema()` and
 * drops its notes.
 */
import type { MigrationBuilder } from 'node-pg-migrate';
import { tsmCommand } from '../report/shell.js';

/** The read side of a connection, as migrations see it (`pgm.db.select`): rows to narrow. */
export interface ReadDb {
  select(sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
}

export interface MigrationContext {
  /** The target schema, unquoted (as given to --schema). Quote it wherever it reaches SQL. */
  readonly schema: string;
  /** Records a decision for the user. Data only: never sent to the server. */
  note(text: string): void;
  /** A tsm command line to suggest, e.g. command('dedupe') → `tsm dedupe --schema 'it'\''s'`. */
  command(args: string): string;
  /**
   * `--dry-run`: `pgm.db.query` records instead of running, so a migration that reads the
   * catalog back after its own direct statements must not expect to see their effect.
   */
  readonly dryRun?: boolean;
}

/**
 * A migration's refusal that carries a stable code for the `--json` error document (e.g.
 * `partition_key`) and what the migration knew. Migrations stay self-contained: they throw
 * `Object.assign(new Error(message), { refusal: { code, data } })`; tsm reads it with refusalOf().
 */
export interface MigrationRefusal {
  code: string;
  data?: Record<string, unknown>;
}

/** The refusal details of an error a migration threw (or undefined): for FailError's `{ code, data }`. */
export function refusalOf(err: unknown): MigrationRefusal | undefined {
  const r = err !== null && typeof err === 'object' ? (err as { refusal?: unknown }).refusal : undefined;
  if (r === null || typeof r !== 'object') return undefined;
  const { code, data } = r as { code?: unknown; data?: unknown };
  if (typeof code !== 'string' || !/^[a-z][a-z0-9_]*$/.test(code)) return undefined;
  return data !== null && typeof data === 'object' && !Array.isArray(data) ? { code, data: data as Record<string, unknown> } : { code };
}

export type MigrationAction = (pgm: MigrationBuilder, ...rest: [MigrationContext?]) => Promise<void> | void;

/** What a migration module may export. `preflight` is tsm's addition; node-pg-migrate ignores it. */
export interface MigrationModule {
  up?: MigrationAction | false;
  down?: MigrationAction | false;
  shorthands?: Record<string, unknown>;
  /** Read-only: throws (with a message for the user) when `up` could not succeed in the current state. */
  preflight?: (db: ReadDb, schema: string, ctx?: MigrationContext) => Promise<void>;
}

export interface ContextOptions {
  /** Called with each note as the migration makes it (a long migration's steps, shown live). */
  onNote?: (text: string) => void;
  dryRun?: boolean;
}

/** A context whose notes land in `notes`. */
export function migrationContext(schema: string, notes: string[], opts: ContextOptions = {}): MigrationContext {
  return {
    schema,
    note: (text: string) => {
      notes.push(String(text));
      opts.onNote?.(String(text));
    },
    command: (args: string) => tsmCommand(schema, args),
    dryRun: opts.dryRun === true,
  };
}

/**
 * A note or message as one safe line for a terminal or an SQL comment: control characters
 * (newlines included) are shown escaped, so catalog text can neither start a new SQL line in
 * `--dry-run` output nor move the cursor of a terminal.
 */
export function oneLine(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`;
  });
}
