/**
 * The one hook between commander's wiring and the fleet: a command that can run over a fleet gets
 * a loader that, when `--targets` or `--targets-like` is given, runs the fleet (src/cli/fleet/run.ts)
 * with the command's own module per target; otherwise the command's module as before. Nothing is
 * loaded until the command runs (program.ts imports this file for every `tsm` start).
 */
import type { Loader } from '../program.js';
import type { FleetCommand } from './commands.js';

export function fleetable(command: FleetCommand, load: Loader): Loader {
  return () =>
    Promise.resolve({
      async run(ctx, args) {
        if (typeof args.options.targets === 'string' || typeof args.options.targetsLike === 'string') {
          const { runFleetCommand } = await import('./run.js');
          return runFleetCommand(command, load, ctx, args);
        }
        return (await load()).run(ctx, args);
      },
    });
}
