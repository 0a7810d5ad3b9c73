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
import { TsmError } from '../errors.js';

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

/** The document of an error that stopped a command: typed errors carry their code and data. */
export function errorDocument(err: unknown, known: Record<string, unknown> = {}): ErrorDocument {
  if (err instanceof TsmError) return document(err.code, firstLine(err.message), known, err.data);
  const message = err instanceof Error ? err.message : String(err);
  return document(ERROR_CODE.unexpected, `unexpected error: ${firstLine(message)}`, known);
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
