/** Spawns the real CLI (bin/tsm.js) and captures what a user would see. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

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
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
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
