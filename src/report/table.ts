import Table from 'cli-table3';

/** A plain, border-light table; colour is applied by the caller to cell text. */
export function renderTable(
  head: string[],
  rows: (string | number)[][],
  colWidths?: number[],
  opts: { compact?: boolean } = {},
): string {
  const table = new Table({
    head,
    style: { head: [], border: [], compact: opts.compact === true },
    wordWrap: true,
    ...(colWidths ? { colWidths } : {}),
  });
  for (const row of rows) table.push(row.map((c) => String(c)));
  return table.toString();
}
