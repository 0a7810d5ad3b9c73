/**
 * Progress on stderr: a spinner with the current activity and its elapsed time on a terminal,
 * plain `tsm demo: …` lines otherwise (CI logs, pipes). Log lines from the steps are printed
 * above the spinner without garbling it.
 */
const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export interface Progress {
  /** A new activity (the previous one is marked done). */
  step(message: string): void;
  /** A log line (from a command): printed as is, above the spinner. */
  log(message: string): void;
  /** Ends the current activity and the spinner. */
  done(): void;
}

export function makeProgress(stream: NodeJS.WriteStream = process.stderr, prefix = 'tsm demo'): Progress {
  if (!stream.isTTY) {
    return {
      step: (m) => void stream.write(`${prefix}: ${m}\n`),
      log: (m) => void stream.write(m + '\n'),
      done: () => {},
    };
  }
  let current: string | null = null;
  let since = Date.now();
  let frame = 0;
  let timer: NodeJS.Timeout | null = null;
  const clear = (): void => void stream.write('\r\x1b[2K');
  const draw = (): void => {
    if (current === null) return;
    const secs = ((Date.now() - since) / 1000).toFixed(1);
    clear();
    stream.write(`${FRAMES[frame++ % FRAMES.length]} ${current} ${secs}s`);
  };
  const finish = (): void => {
    if (current === null) return;
    const secs = ((Date.now() - since) / 1000).toFixed(1);
    clear();
    stream.write(`✓ ${current} (${secs}s)\n`);
    current = null;
  };
  return {
    step(message) {
      finish();
      current = message;
      since = Date.now();
      if (!timer) {
        timer = setInterval(draw, 80);
        timer.unref();
      }
      draw();
    },
    log(message) {
      clear();
      stream.write(message + '\n');
      draw();
    },
    done() {
      finish();
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
