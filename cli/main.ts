import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { isPatchFedError } from '../shared/errors.ts';

/**
 * Every command lives in its own module under cli/commands and exports `register(program)`.
 * A command module imports only commander and these helpers at top level and loads its real
 * work inside its action, so `patchfed --help` stays fast (tfjs is never loaded for it).
 */
const COMMAND_MODULES = [
  'phantom',
  'inspect',
  'plan',
  'train',
  'predict',
  'compare',
  'keygen',
  'coordinator',
  'site',
  'simulate',
  'bench',
] as const;

export interface CommandModule {
  register(program: Command): void | Promise<void>;
}

export async function buildProgram(): Promise<Command> {
  const program = new Command();
  program
    .name('patchfed')
    .description(
      'Federated training of memory-efficient 3D segmentation U-Nets across hospitals.\n' +
        'No image or label leaves a site: only encrypted, signed weight updates do.',
    )
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) })
    .exitOverride();
  for (const name of COMMAND_MODULES) {
    const mod = (await import(`./commands/${name}.ts`)) as CommandModule;
    await mod.register(program);
  }
  // Every subcommand reports errors the same way as the root.
  for (const cmd of program.commands) cmd.exitOverride().showHelpAfterError('(run with --help for usage)');
  return program;
}

/** An error the user caused on the command line: printed without a stack trace. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

export async function main(argv: string[]): Promise<number> {
  let program: Command;
  program = await buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are "errors" to commander; they already printed.
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof CliError) {
      process.stderr.write(`patchfed: ${e.message}\n`);
      return e.exitCode;
    }
    if (isPatchFedError(e)) {
      process.stderr.write(`patchfed: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`patchfed: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 70;
  }
}

// ---- option parsers shared by commands: bad values are errors naming the option ----

export function parseIntOption(name: string, min = -Infinity, max = Infinity) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${name} must be an integer, got '${value}'.`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}.`);
    return n;
  };
}

export function parseFloatOption(name: string, min = -Infinity, max = Infinity) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${value}'.`);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}.`);
    return n;
  };
}

/** "64,64,48" -> [64, 64, 48]; every entry a positive integer. */
export function parseShapeOption(name: string, length = 3) {
  return (value: string): number[] => {
    const parts = value.split(/[,x×]/).map((s) => s.trim());
    if (parts.length !== length || parts.some((p) => !/^\d+$/.test(p) || Number(p) < 1)) {
      throw new InvalidArgumentError(`${name} must be ${length} positive integers separated by commas (e.g. 64,64,48), got '${value}'.`);
    }
    return parts.map(Number);
  };
}

export function parseChoice<T extends string>(name: string, choices: readonly T[]) {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`${name} must be one of ${choices.join(', ')}, got '${value}'.`);
    }
    return value as T;
  };
}
