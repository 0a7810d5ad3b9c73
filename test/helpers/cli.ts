/** Spawns the real CLI (bin/tsm.js) and captures what a user would see. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/cli/commands/demo/embedded.js';

export const BIN = fileURLToPath(new URL('../../../bin/tsm.js', import.meta.url));

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /**
   * stdout parsed as the one JSON document; throws with the raw text when it is not. Pass the
   * command's document type (`r.json<DoctorReport>()`) where one exists.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the untyped default lets a test read a document field by field where no type exists yet (a wrong field fails its assertion, not silently)
  json<T = any>(): T;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Called with the child right after spawn (e.g. to kill it mid-run). */
  onSpawn?: (child: ReturnType<typeof spawn>) => void;
  /** Run as another OS user (root only), e.g. `postgres` for peer authentication on a socket. */
  uid?: number;
  gid?: number;
}

/** Environment without any database settings of the machine, so tests are explicit. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'DATABASE_URL' || /^PG[A-Z]+$/.test(k) || k === 'FORCE_COLOR') continue;
    env[k] = v;
  }
  env.NO_COLOR = '1';
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/**
 * Runs the CLI to completion. Never rejects (a failure to spawn is reported as exit code null with
 * the reason in stderr), so a test may start a run, await other things, and read the result later.
 */
export function runTsm(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const as = opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {};
    const child = spawn(process.execPath, [BIN, ...args], { ...as, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    // A guard against a hung process, not a speed limit: a test that asserts a duration says so.
    const limitMs = opts.timeoutMs ?? 120_000;
    const timer = setTimeout(() => {
      stderr += `runTsm: tsm ${args[0] ?? ''} still running after ${limitMs} ms: killed (SIGKILL)\n`;
      child.kill('SIGKILL');
    }, limitMs);
    opts.onSpawn?.(child);
    child.on('error', (err) => {
      stderr += `runTsm: cannot run ${BIN}: ${err.message}\n`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout,
        stderr,
        json() {
          try {
            return JSON.parse(stdout);
          } catch {
            throw new Error(`stdout is not one JSON document:\n${stdout}\n--- stderr:\n${stderr}`);
          }
        },
      });
    });
  });
}

/**
 * What starting tsm costs right now: the wall time of a run that loads a command and pg and fails
 * at once (a closed port). Tests that bound a duration ("no retries", "gave up at the timeout")
 * subtract it, so a loaded machine's slow Node start is not mistaken for tsm waiting.
 */
export async function startCostMs(): Promise<number> {
  const port = await freePort();
  const t0 = performance.now();
  const r = await runTsm(['doctor', '--json', '-d', `postgres://tsm@127.0.0.1:${port}/postgres`]);
  const ms = performance.now() - t0;
  if (r.code !== 3) throw new Error(`startCostMs: expected exit 3 from a closed port, got ${r.code}: ${r.stderr}`);
  return ms;
}
