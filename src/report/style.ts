import { Chalk, type ChalkInstance } from 'chalk';
import type { Status } from './status.js';

export type { Status };

/** Colour only on a TTY, never with --no-color or NO_COLOR set. */
export function makeStyle(wantColor: boolean, stream: NodeJS.WriteStream = process.stdout): ChalkInstance {
  const enabled = wantColor && !('NO_COLOR' in process.env && process.env.NO_COLOR !== '') && stream.isTTY === true;
  return new Chalk({ level: enabled ? 1 : 0 });
}

export function paintStatus(style: ChalkInstance, status: Status): string {
  switch (status) {
    case 'ok':
      return style.green(status);
    case 'warn':
      return style.yellow(status);
    case 'fail':
      return style.red.bold(status);
    default:
      return style.gray(status);
  }
}
