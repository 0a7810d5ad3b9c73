/**
 * The --json document of a command that could not do its job (design, "Output rules"): exactly one
 * JSON document on stdout on every exit path, `{"ok": false, "error": {"code", "message"}, …}` plus
 * what the command knew (`TsmError.data`). Messages are the same one line the human output prints.
 */
import { TsmError } from '../errors.js';

export interface ErrorDocument {
  ok: false;
  error: { code: string; message: string };
  [known: string]: unknown;
}

export function errorDocument(err: unknown, known: Record<string, unknown> = {}): ErrorDocument {
  if (err instanceof TsmError) {
    return { ...known, ...(err.data ?? {}), ok: false, error: { code: err.code, message: firstLine(err.message) } };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { ...known, ok: false, error: { code: 'unexpected', message: `unexpected error: ${firstLine(message)}` } };
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? '';
}
