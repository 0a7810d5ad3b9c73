/**
 * The --json documents (design, "Output rules"): exactly one JSON document on stdout on every exit
 * path. A command that did its job prints its result with `"ok"` (true exactly when it exits 0, unless
 * the command set `ok` itself); a command that could not do its job (usage error, cannot connect,
 * refused, stopped by a signal) prints `{"ok": false, "error": {"code", "message"}, …}` plus what it
 * knew (`TsmError.data`, the command, the target). Messages are the same one line the human output
 * prints on stderr (without the `tsm: ` prefix). src/cli/main.ts is the one place that prints them;
 * `tsm demo` (and anything else that runs commands in-process) builds its step results with the
 * same functions.
 */
import { classifyError } from '../db/classify.js';
import { EXIT, TsmError } from '../errors.js';

export interface ErrorDocument {
  ok: false;
  error: { code: string; message: string };
  [known: string]: unknown;
}

/** The stable `error.code` of each kind of stop that is not a TsmError. */
export const ERROR_CODE = {
  /** A bad command line (commander's own errors: unknown option, missing argument, bad choice, …). */
  usage: 'usage',
  /** SIGINT, SIGTERM or SIGHUP stopped the command. */
  interrupted: 'interrupted',
  /** A bug or an error tsm did not expect (exit 1). */
  unexpected: 'unexpected',
} as const;

const firstLine = (text: string): string => text.split('\n')[0] ?? '';

function document(code: string, message: string, ...known: (Record<string, unknown> | undefined)[]): ErrorDocument {
  const error = { code, message };
  // ok and error come first in the printed document, and nothing the command knew can replace them.
  return Object.assign({ ok: false as const, error }, ...known, { ok: false as const, error }) as ErrorDocument;
}

/** An error as the CLI reports it: the one line, the stable code, the exit code, what it knew. */
export interface DescribedError {
  code: string;
  /** One line, without `tsm: `. */
  message: string;
  exitCode: number;
  data?: Record<string, unknown>;
}

/** A server error (node-postgres' DatabaseError: a SQLSTATE and a severity). */
function isServerError(err: unknown): err is Error & { code: string } {
  if (!(err instanceof Error) || !('severity' in err)) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

/**
 * Typed errors carry their code, exit code and data. A database error that no command turned into a
 * typed one still gets its classified code (design, "Error classification": `read_only`,
 * `permission_denied`, …) and exit 1 (3 for a lost connection); anything else is `unexpected` (exit 1).
 */
export function describeError(err: unknown): DescribedError {
  if (err instanceof TsmError) {
    return { code: err.code, message: firstLine(err.message), exitCode: err.exitCode, ...(err.data ? { data: err.data } : {}) };
  }
  const c = classifyError(err);
  if (isServerError(err) || c.code === 'connection_error') {
    const where = c.sqlstate !== null ? `${c.code}, SQLSTATE ${c.sqlstate}` : c.code;
    return { code: c.code, message: `${firstLine(c.message)} (${where})`, exitCode: c.code === 'connection_error' ? EXIT.connect : EXIT.failed };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: ERROR_CODE.unexpected, message: `unexpected error: ${firstLine(message)}`, exitCode: EXIT.failed };
}

/** The document of an error that stopped a command. */
export function errorDocument(err: unknown, known: Record<string, unknown> = {}): ErrorDocument {
  const d = describeError(err);
  return document(d.code, d.message, known, d.data);
}

/** A command-line error found before the command ran (commander's, or a missing command). */
export function usageDocument(message: string, known: Record<string, unknown> = {}): ErrorDocument {
  return document(ERROR_CODE.usage, firstLine(message), known);
}

/** What the cleanup stack reports when a signal stopped the command. */
export interface Interruption {
  signal: NodeJS.Signals;
  /** What the cleanups said they did ('test rows removed', …). */
  notes: string[];
}

/** The document of a command stopped by a signal; the message is the stderr line without `tsm: `. */
export function interruptedDocument(command: string, stop: Interruption, known: Record<string, unknown> = {}): ErrorDocument {
  const message = `${command} interrupted by ${stop.signal}${stop.notes.length > 0 ? `: ${stop.notes.join('; ')}` : ''}`;
  return document(ERROR_CODE.interrupted, message, known, { signal: stop.signal, cleanup: stop.notes });
}

/**
 * The document of a command that ran to its end: its data with `"ok"` first. `ok` is the command's
 * own when it sets one (test-write, bench, demo), else whether it exits 0 (doctor with a failing check:
 * false, like `migrate status` with pending migrations).
 */
export function resultDocument(data: unknown, exitCode: number): Record<string, unknown> {
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const d = data as Record<string, unknown>;
    return typeof d.ok === 'boolean' ? Object.assign({ ok: d.ok }, d) : Object.assign({ ok: exitCode === 0 }, d);
  }
  return { ok: exitCode === 0, result: data };
}
