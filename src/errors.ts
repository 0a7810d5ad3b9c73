/** Typed errors, mapped to exit codes in one place (src/cli/main.ts). */
export const EXIT = { ok: 0, failed: 1, usage: 2, connect: 3 } as const;

export class TsmError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad flag, bad URL, no database configured: exit 2. */
export class UsageError extends TsmError {
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

/** Refused connection, wrong password, missing database: exit 3. */
export class ConnectError extends TsmError {
  constructor(message: string) {
    super(message, EXIT.connect);
  }
}

/** The command ran and found or caused a failure: exit 1. */
export class FailError extends TsmError {
  constructor(message: string) {
    super(message, EXIT.failed);
  }
}
