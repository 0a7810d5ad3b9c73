/**
 * The fleet's target file (design, "Fleet"): one target a line, `[name] url`, `#` comments and
 * blank lines ignored, `${VAR}` expanded from the environment (so secrets stay out of the file).
 *
 *   # tenants, one database each
 *   tenant_a   postgres://app:${TENANT_A_PASSWORD}@db1:5432/tenant_a
 *   postgres://app@db2:5432/tenant_b            # no name: named after its database (tenant_b)
 *   eu-west    host=db3 dbname=sessions user=app   (a libpq keyword/value string works too)
 *
 * A line is a connection string alone when its first word starts with `postgres://` /
 * `postgresql://` or contains `=`; otherwise the first word is the target's name and the rest of
 * the line its connection string. Only whole-line comments: `#` may appear inside a URL.
 *
 * Every `${VAR}` that is not set is a usage error naming the variables and their lines, raised
 * before anything connects. Values are inserted as they are: a password with reserved URL
 * characters must be percent-encoded in the variable (or kept in PGPASSFILE).
 */
import { UsageError } from '../errors.js';

export interface TargetLine {
  /** 1-based line number in the file (for messages). */
  readonly line: number;
  /** The name given in the file, expanded; undefined when the line has none. */
  readonly name: string | undefined;
  /** The connection string, expanded. Holds secrets: never print it (mask it first). */
  readonly conn: string;
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
/** Names: printable, no whitespace, no `=` (that would make them look like a keyword/value pair). */
const NAME = /^[^\s=\p{Cc}]{1,100}$/u;

function looksLikeConnection(word: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(word) || word.includes('=');
}

/**
 * Parses the file's text. `source` names it in messages (`targets.txt`, `stdin`); `env` supplies
 * `${VAR}`. Throws UsageError (exit 2) on a malformed line, an unset variable, or no target.
 */
export function parseTargetFile(text: string, source: string, env: NodeJS.ProcessEnv): TargetLine[] {
  const raw: { line: number; name: string | undefined; conn: string }[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)(?:\s+(.*))?$/.exec(line)!;
    const first = m[1]!;
    if (looksLikeConnection(first)) {
      raw.push({ line: i + 1, name: undefined, conn: line });
      continue;
    }
    const rest = (m[2] ?? '').trim();
    if (rest === '') {
      throw new UsageError(`${source}:${i + 1}: '${printable(first)}' is not a connection string (expected [name] postgres://user@host:5432/database)`);
    }
    raw.push({ line: i + 1, name: first, conn: rest });
  }

  // Every unset variable in one message, before anything else can happen.
  const missing = new Map<string, number[]>();
  const expand = (text: string, line: number): string =>
    text.replace(VAR, (_all, name: string) => {
      const v = env[name];
      if (v === undefined) {
        const at = missing.get(name) ?? [];
        if (!at.includes(line)) at.push(line);
        missing.set(name, at);
        return '';
      }
      return v;
    });
  const out = raw.map((r) => ({ line: r.line, name: r.name === undefined ? undefined : expand(r.name, r.line), conn: expand(r.conn, r.line) }));
  if (missing.size > 0) {
    const list = [...missing].map(([name, at]) => `\${${name}} (line${at.length > 1 ? 's' : ''} ${at.join(', ')})`);
    throw new UsageError(`${source}: environment variable${missing.size > 1 ? 's' : ''} not set: ${list.join(', ')}; nothing was run`, {
      code: 'unset_variable',
      data: { unset: [...missing.keys()] },
    });
  }
  for (const t of out) {
    if (t.name !== undefined && !NAME.test(t.name)) {
      throw new UsageError(`${source}:${t.line}: target name '${printable(t.name)}' must be 1–100 printable characters without spaces or '='`);
    }
    if (t.conn.trim() === '') throw new UsageError(`${source}:${t.line}: the connection string is empty after expanding variables`);
  }
  if (out.length === 0) throw new UsageError(`${source}: no targets (one a line: [name] postgres://user@host:5432/database)`, { code: 'no_targets' });
  return out;
}

/** A name for messages: control characters shown as `?`, at most 60 characters. */
function printable(s: string): string {
  const clean = s.replace(/\p{Cc}/gu, '?');
  return clean.length > 60 ? clean.slice(0, 57) + '…' : clean;
}

/**
 * The connection string `conn` pointed at database `dbname` (for `--targets-like`): a URL's path
 * is replaced (and a `dbname=` parameter dropped); a keyword/value string gets `dbname='…'` appended
 * (libpq: the last value of a keyword wins). Everything else (user, TLS, password) stays as given.
 */
export function withDatabase(conn: string, dbname: string): string {
  const s = conn.trim();
  // As src/db/conninfo.ts parses a URI: the query starts at the first '?', the path at the first '/'.
  const m = /^(postgres(?:ql)?:\/\/[^/?]*)(?:\/[^?]*)?(\?.*)?$/is.exec(s);
  if (m) {
    const query = (m[2] ?? '')
      .slice(1)
      .split('&')
      .filter((p) => p !== '' && !/^dbname=/i.test(p));
    return `${m[1]}/${encodeURIComponent(dbname)}${query.length > 0 ? '?' + query.join('&') : ''}`;
  }
  return `${s} dbname='${dbname.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
