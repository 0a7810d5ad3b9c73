/**
 * Shell quoting for the commands tsm suggests (`tsm migrate up --schema 'it'\''s'`), so a hint can
 * be pasted into a POSIX shell as it is, whatever the schema is called. Pure functions: no chalk,
 * no I/O; engines (doctor, migrate, dedupe) use them for remedy text.
 */

/** A word for a POSIX shell: unchanged when it needs no quoting, else single-quoted ('\'' for '). */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `tsm <command>`, with `--schema <quoted>` when the schema is not the default `public`. */
export function tsmCommand(schema: string, command: string): string {
  return schema === 'public' ? `tsm ${command}` : `tsm ${command} --schema ${shellQuote(schema)}`;
}
