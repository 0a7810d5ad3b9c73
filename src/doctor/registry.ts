/** Every doctor check, in the order of the design's table (and of the report). */
import { columnsDiagnostics } from './checks/columns-diagnostics.js';
import { columnsRequired } from './checks/columns-required.js';
import { columnsSessionTypes } from './checks/columns-session-types.js';
import { connection } from './checks/connection.js';
import { dataDuplicates } from './checks/data-duplicates.js';
import { dataNullUserId } from './checks/data-null-user-id.js';
import { functionUpsert } from './checks/function-upsert.js';
import { indexInvalid } from './checks/index-invalid.js';
import { indexOnConflict } from './checks/index-on-conflict.js';
import { indexUserIdUnique } from './checks/index-user-id-unique.js';
import { migrations } from './checks/migrations.js';
import { privileges } from './checks/privileges.js';
import { serverWritable } from './checks/server-writable.js';
import { table } from './checks/table.js';
import type { Check } from './types.js';

export const CHECKS: readonly Check[] = [
  connection,
  table,
  columnsRequired,
  columnsSessionTypes,
  columnsDiagnostics,
  indexUserIdUnique,
  indexInvalid,
  indexOnConflict,
  dataDuplicates,
  dataNullUserId,
  functionUpsert,
  privileges,
  migrations,
  serverWritable,
];

export const CHECK_IDS: readonly string[] = CHECKS.map((c) => c.id);

export function findCheck(id: string): Check | undefined {
  return CHECKS.find((c) => c.id === id);
}
