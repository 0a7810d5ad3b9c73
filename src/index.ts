/**
 * The library: what applications call instead of hand-written SQL. Exports only: importing it runs
 * nothing and loads no CLI code (no commander, chalk or cli-table3); see docs/architecture.md.
 */
export { classifyError, type Classified, type ErrorCode } from './db/classify.js';
export { maskUrl } from './db/conninfo.js';
export { pgConfig, resolvePg, DEFAULT_CONNECT_TIMEOUT_S, type PgConfigOptions, type PgTarget } from './db/resolve.js';
export {
  SessionStore,
  validateSaveInput,
  DEFAULT_SAVE_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type SaveInput,
  type SaveOptions,
  type SaveResult,
  type SaveOk,
  type SaveFailure,
  type SaveLogEvent,
  type SessionStoreOptions,
  type RetryOptions,
  type Via,
} from './store/store.js';
export { createSessionMetrics, METRIC, DURATION_BUCKETS, type SessionMetrics, type SaveStatus } from './store/metrics.js';
export { makeSessionString, shortHash } from './store/session-string.js';
export {
  runDoctor,
  exitCodeFor,
  CHECKS,
  CHECK_IDS,
  DEFAULT_DATA_BUDGET,
  type CheckResult,
  type DataBudget,
  type DoctorEnv,
  type DoctorReport,
} from './doctor/index.js';
export { migrationStatus, type MigrationStatus, type MigrationRow, type MigrationState } from './migrate/status.js';
export type { MigrationContext, ReadDb } from './migrate/context.js';
export { dedupe, type DedupeOptions, type DedupeReport } from './dedupe/engine.js';
