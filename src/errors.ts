/**
 * Typed errors, mapped to exit codes in one place (src/cli/main.ts). Engines throw them; the CLI
 * prints `tsm: <message>` (one line) or, with --json, the error document (src/cli/error-document.ts).
 *
 * `code` is a stable, machine-readable word for the JSON document (`usage`, `connection`,
 * `failed`, or something more specific such as `read_only` or `transaction_pooler`); `data` is what
 * the command knew when it stopped (for example the migrations applied before a failure).
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, connect: 3 } as const;

export interface ErrorDetails {
  /** A stable word for the JSON document; defaults to the error class's (usage, connection, failed). */
  code?: string;
  /** What the command knew when it stopped; merged into the --json error document. */
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class TsmError extends Error {
  readonly code: string;
  readonly data: Record<string, unknown> | undefined;
  constructor(
    message: string,
    readonly exitCode: number,
    details: ErrorDetails & { code: string },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code;
    this.data = details.data;
  }
}

/** Bad flag, bad URL, no database configured, a target tsm refuses to work through: exit 2. */
export class UsageError extends TsmError {
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, EXIT.usage, { ...details, code: details.code ?? 'usage' });
  }
}

/** Refused connection, wrong password, missing database: exit 3. */
export class ConnectError extends TsmError {
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, EXIT.connect, { ...details, code: details.code ?? 'connection' });
  }
}

/** The command ran and found or caused a failure: exit 1. */
export class FailError extends TsmError {
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, EXIT.failed, { ...details, code: details.code ?? 'failed' });
  }
}
