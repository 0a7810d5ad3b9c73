/**
 * The README is the front door: it must stay short, its option table must say what `tsm --help`
 * says, and no link in it or in docs/ may lead nowhere (a file, or a heading of that file).
 * No database involved.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { runTsm } from './helpers/cli.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const README = join(ROOT, 'README.md');
const read = (path: string): string => readFileSync(path, 'utf8');

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(markdown: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (m) out.add(slug(m[1]!));
  }
  return out;
}

/** Relative links `[text](path#anchor)` outside code blocks. */
function linksOf(markdown: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    if (fenced) continue;
    for (const m of line.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (!/^[a-z]+:/i.test(target)) out.push(target);
    }
  }
  return out;
}

describe('README.md', () => {
  it('is the front door: at most about 250 lines', () => {
    const lines = read(README).split('\n').length;
    assert.ok(lines <= 260, `README.md has ${lines} lines`);
  });

  it("the global option table says what `tsm --help` says", async () => {
    const help = await runTsm(['--help']);
    assert.equal(help.code, 0, help.stderr);
    const inHelp = [...help.stdout.matchAll(/^\s+(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]!).filter((f) => f !== '--version' && f !== '--help');
    const section = read(README).split('## Configuration')[1]!.split('\n## ')[0]!;
    const inReadme = [...section.matchAll(/^\| `(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]!);
    assert.deepEqual([...inReadme].sort(), [...inHelp].sort());
  });

  it('every relative link in README.md and docs/ leads to a file and, when it names one, a heading there', () => {
    const docs = readdirSync(join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => join(ROOT, 'docs', f));
    const broken: string[] = [];
    for (const file of [README, ...docs, join(ROOT, 'bench', 'README.md')]) {
      for (const link of linksOf(read(file))) {
        const [path, anchor] = link.split('#') as [string, string | undefined];
        const target = path === '' ? file : resolve(dirname(file), path);
        let text: string;
        try {
          text = read(target);
        } catch {
          try {
            readdirSync(target);
            continue; // a folder
          } catch {
            broken.push(`${file.slice(ROOT.length + 1)}: ${link} (no such file)`);
            continue;
          }
        }
        if (anchor !== undefined && target.endsWith('.md') && !anchorsOf(text).has(anchor)) {
          broken.push(`${file.slice(ROOT.length + 1)}: ${link} (no such heading)`);
        }
      }
    }
    assert.deepEqual(broken, []);
  });
});
