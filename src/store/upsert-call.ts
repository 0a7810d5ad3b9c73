/**
 * One upsert as a pg "submittable" (the interface pg-cursor and pg-query-stream use). Named (the
 * default): the statement is parsed once per connection (a named prepared statement), then each
 * call sends only Bind / Execute / Sync, encoded here into one buffer and written with one write,
 * and reads the one returned id straight from the DataRow. Unnamed (name ''; behind a
 * transaction-mode pooler): Parse of the unnamed statement, Bind, Execute and Sync in one buffer,
 * so the whole call is one transaction on whichever server connection the pooler picks.
 *
 * pg's own Query would also send a Describe per call, write three messages through three
 * serializer calls, and build a Result object with type parsers for every row description; for a
 * call that returns one uuid as text that is most of the client-side CPU, and a client that burns
 * CPU next to its database server slows the server down (bench/README.md, upsert-vs-pgbench).
 */

/** The parts of pg's internal Connection this uses (the same calls pg's own Query makes). */
interface PgConnection {
  parsedStatements: Record<string, string>;
  submittedNamedStatements: Record<string, string>;
  stream: { cork?: () => void; uncork?: () => void; write(buf: Buffer): boolean };
  parse(msg: { text: string; name: string; types: number[] }): void;
  bind(msg: { statement: string; values: unknown[] }): void;
  execute(msg: { portal: string; rows: number }): void;
  sync(): void;
  sendCopyFail(msg: string): void;
}

export type Callback = (err: Error | null, id: string | null) => void;

export class UpsertCall {
  /** pg reads `name` and `text` to track which statements a connection has parsed. */
  readonly name: string;
  readonly text: string;
  /** Set by pg's client.query(). */
  callback: Callback | undefined;
  private readonly values: unknown[];
  private id: string | null = null;
  private settled = false;

  constructor(name: string, text: string, values: unknown[], callback?: Callback) {
    this.name = name;
    this.text = text;
    this.values = values;
    this.callback = callback;
  }

  submit(con: PgConnection): Error | null {
    if (this.name === '') {
      con.stream.write(bindExecuteSync('', this.values, parseUnnamed(this.text)));
      return null;
    }
    const previous = con.parsedStatements[this.name] ?? con.submittedNamedStatements[this.name];
    if (previous !== undefined && previous !== this.text) {
      return new Error(`prepared statement ${this.name} was used for a different statement`);
    }
    const message = bindExecuteSync(this.name, this.values);
    if (previous !== undefined) {
      con.stream.write(message);
      return null;
    }
    con.stream.cork?.();
    try {
      con.parse({ text: this.text, name: this.name, types: [] });
      con.submittedNamedStatements[this.name] = this.text;
      con.stream.write(message);
    } finally {
      con.stream.uncork?.();
    }
    return null;
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    this.id = msg.fields[0] ?? null;
  }

  handleError(err: Error): void {
    this.settle(err);
  }

  handleReadyForQuery(): void {
    this.settle(null);
  }

  // Messages an upsert does not produce (or whose content it does not need).
  handleRowDescription(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
  handleCopyInResponse(con: PgConnection): void {
    con.sendCopyFail('tsm: an upsert does not copy');
  }

  private settle(err: Error | null): void {
    if (this.settled) return;
    this.settled = true;
    if (err) this.callback?.(err, null);
    else this.callback?.(null, this.id);
  }
}

/** Execute (unnamed portal, all rows) and Sync: always the same 15 bytes. */
const EXECUTE_SYNC = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0x53, 0, 0, 0, 4]);

const parsed = new Map<string, Buffer>();

/** Parse of the unnamed statement with no parameter types given (cached per text: it never changes). */
export function parseUnnamed(text: string): Buffer {
  let hit = parsed.get(text);
  if (hit === undefined) {
    const size = Buffer.byteLength(text, 'utf8');
    // length field + "" name "\0" + text + "\0" + int16 parameter type count (0)
    const length = 4 + 1 + size + 1 + 2;
    hit = Buffer.alloc(1 + length);
    let o = 0;
    hit[o++] = 0x50; // 'P'
    o = hit.writeInt32BE(length, o);
    hit[o++] = 0; // the unnamed statement
    o += hit.write(text, o, 'utf8');
    hit[o++] = 0;
    hit.writeInt16BE(0, o);
    if (parsed.size < 64) parsed.set(text, hit);
  }
  return hit;
}

/**
 * Bind (unnamed portal, the named statement, every parameter as text or NULL, results as text),
 * then Execute and Sync, in one buffer (PostgreSQL frontend/backend protocol v3); `prefix` (a
 * Parse message) goes in front of them in the same buffer.
 */
export function bindExecuteSync(statement: string, values: readonly unknown[], prefix?: Buffer): Buffer {
  const n = values.length;
  const texts: (string | null)[] = new Array(n);
  const sizes: number[] = new Array(n);
  const nameSize = Buffer.byteLength(statement, 'utf8');
  // length field + portal "\0" + statement + "\0" + format count + formats + value count + values + result formats
  let bindLength = 4 + 1 + nameSize + 1 + 2 + 2 * n + 2 + 2 + 2;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const t = v === null || v === undefined ? null : typeof v === 'string' ? v : String(v);
    texts[i] = t;
    sizes[i] = t === null ? -1 : Buffer.byteLength(t, 'utf8');
    bindLength += 4 + Math.max(0, sizes[i]!);
  }
  const pre = prefix === undefined ? 0 : prefix.length;
  const buf = Buffer.allocUnsafe(pre + 1 + bindLength + EXECUTE_SYNC.length);
  let o = 0;
  if (prefix !== undefined) o += prefix.copy(buf, 0);
  buf[o++] = 0x42; // 'B'
  o = buf.writeInt32BE(bindLength, o);
  buf[o++] = 0; // unnamed portal
  o += buf.write(statement, o, 'utf8');
  buf[o++] = 0;
  o = buf.writeInt16BE(n, o);
  for (let i = 0; i < n; i++) o = buf.writeInt16BE(0, o); // every parameter in text format
  o = buf.writeInt16BE(n, o);
  for (let i = 0; i < n; i++) {
    o = buf.writeInt32BE(sizes[i]!, o);
    if (texts[i] !== null) o += buf.write(texts[i]!, o, 'utf8');
  }
  o = buf.writeInt16BE(1, o); // one result format …
  o = buf.writeInt16BE(0, o); // … text
  EXECUTE_SYNC.copy(buf, o);
  return buf;
}
