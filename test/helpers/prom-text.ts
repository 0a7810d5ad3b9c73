/**
 * A strict little parser of the Prometheus text exposition format (what node_exporter's textfile
 * collector reads), used by the metrics-*.test.ts files: every line must be a comment (# HELP /
 * # TYPE) or `name{label="value",…} number`, or parsing fails.
 */
import assert from 'node:assert/strict';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Parsed {
  samples: Sample[];
  types: Record<string, string>;
  /** The value of the one sample with this name and exactly these labels (0 when absent). */
  value(name: string, labels?: Record<string, string>): number;
  /** Sum over every sample of this name. */
  sum(name: string): number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseProm(text: string): Parsed {
  const samples: Sample[] = [];
  const types: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types[name!] = type!;
      continue;
    }
    const m = LINE.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  const same = (a: Record<string, string>, b: Record<string, string>): boolean =>
    Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
  return {
    samples,
    types,
    value(name, labels = {}) {
      const hits = samples.filter((s) => s.name === name && same(s.labels, labels));
      assert.ok(hits.length <= 1, `several samples ${name} ${JSON.stringify(labels)}`);
      return hits[0]?.value ?? 0;
    },
    sum(name) {
      return samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
    },
  };
}
