/**
 * One upsert as a pg "submittable" (the interface pg-cursor and pg-query-stream use): the
 * statement is parsed once per connection (a named prepared statement), then each call sends
 * only Bind / Execute / Sync and reads the one returned id straight from the DataRow.
 *
 * pg's own Query would also send a Describe per call and build a Result object with type
 * parsers for every row description; for a call that returns one uuid as text this is the part
 * of the client-side cost that can go (see bench/README.md, upsert-vs-pgbench).
 */

/** The parts of pg's internal Connection this uses (the same calls pg's own Query makes). */
interface PgConnection {
  parsedStatements: Record<string, string>;
  submittedNamedStatements: Record<string, string>;
  stream: { cork?: () => void; uncork?: () => void };
  parse(msg: { text: string; name: string; types: number[] }): void;
  bind(msg: { statement: string; values: unknown[] }): void;
  execute(msg: { portal: string; rows: number }): void;
  sync(): void;
  sendCopyFail(msg: string): void;
}

type Callback = (err: Error | null, id?: string | null) => void;

export class UpsertCall {
  /** pg reads `name` and `text` to track which statements a connection has parsed. */
  readonly name: string;
  readonly text: string;
  /** Set by pg's client.query(). */
  callback: Callback | undefined;
  private readonly values: unknown[];
  private id: string | null = null;
  private settled = false;

  constructor(name: string, text: string, values: unknown[]) {
    this.name = name;
    this.text = text;
    this.values = values;
  }

  submit(con: PgConnection): Error | null {
    const previous = con.parsedStatements[this.name] ?? con.submittedNamedStatements[this.name];
    if (previous !== undefined && previous !== this.text) {
      return new Error(`prepared statement ${this.name} was used for a different statement`);
    }
    con.stream.cork?.();
    try {
      if (previous === undefined) {
        con.parse({ text: this.text, name: this.name, types: [] });
        con.submittedNamedStatements[this.name] = this.text;
      }
      con.bind({ statement: this.name, values: this.values });
      con.execute({ portal: '', rows: 0 });
      con.sync();
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
    if (err) this.callback?.(err);
    else this.callback?.(null, this.id);
  }
}
