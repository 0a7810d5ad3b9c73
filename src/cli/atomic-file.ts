/**
 * Atomic file writes for node_exporter's textfile collector: write a temp file in the same
 * directory (its name does not end in .prom, so the collector ignores it), then rename it over
 * the target, so a scrape never sees a half-written file.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';

/** Fails early (exit 2) when the file could never be written, before any database work. */
export function checkWritableTarget(flag: string, file: string): string {
  const path = resolve(file);
  const dir = dirname(path);
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new UsageError(`${flag}: directory ${dir} does not exist`);
  }
  if (!isDir) throw new UsageError(`${flag}: ${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UsageError(`${flag}: directory ${dir} is not writable`);
  }
  try {
    if (statSync(path).isDirectory()) throw new UsageError(`${flag}: ${path} is a directory`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
  }
  return path;
}

export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  try {
    await writeFile(tmp, content, { mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}
