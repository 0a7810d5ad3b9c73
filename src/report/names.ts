/** Names as a person would type them, for human output and remedies (not for SQL sent to the server). */
import { quoteIdent } from '../db/ident.js';

/** An identifier quoted only when it has to be: `public`, `"My Schema"`. */
export function shownIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : quoteIdent(name);
}
