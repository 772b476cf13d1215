import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
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
  'evaluate',
  'export',
  'compare',
  'keygen',
  'token',
  'coordinator',
  'site',
  'simulate',
  'bench',
  'setup',
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
    .version(packageVersion(), '--version', 'print the PatchFed version')
    .configureHelp({ optionDescription: describeOption })
    .exitOverride();
  for (const name of COMMAND_MODULES) {
    const mod = (await import(`./commands/${name}.ts`)) as CommandModule;
    await mod.register(program);
  }
  applyConventions(program);
  return program;
}

// ---- conventions every command gets (errors, help), applied here so new commands get them too ----

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** `patchfed site`, `patchfed bench kernels`, ... */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Commander's error text as the README promises it: one line, one prefix, the option named,
 * commander's suggestion kept ("did you mean --config?"), and where to find the usage.
 */
export function oneLineError(cmd: Command, raw: string): string {
  let text = raw.trim().replace(/^error:\s*/i, '');
  // "option '--x <n>' argument 'abc' is invalid. --x must be an integer, got 'abc'." -> our reason alone
  // Our parsers' messages name the option already; commander's own (choices) do not.
  const invalid = /^option '([^' ]+)[^']*' argument '([\s\S]*)' is invalid\.\s*([\s\S]+)$/.exec(text);
  if (invalid?.[1] && invalid[3]) {
    const [, flag, value, reason] = invalid;
    text = reason.includes(flag) ? reason : `${flag} '${value}' is invalid: ${reason.charAt(0).toLowerCase()}${reason.slice(1)}`;
  }
  text = text.replace(/\s*\n\(Did you mean ([^)]*)\)/, ' (did you mean $1?)').replace(/\?\?\)/, '?)');
  text = text.replace(/\s*\n\s*/g, ' ').replace(/\.$/, '');
  return `patchfed: ${text}; run '${commandPath(cmd)} --help' for usage\n`;
}

/** Help text of an option, the same way for every command: choices, "(default: x)", "(required)". */
function describeOption(option: Option): string {
  const text = option.description.replace(/\(default (?!:)/g, '(default: ');
  const extra: string[] = [];
  if (option.argChoices && !text.includes('|')) extra.push(`one of ${option.argChoices.join(' | ')}`);
  const shown = option.defaultValueDescription ?? (Array.isArray(option.defaultValue) ? option.defaultValue.join(',') : option.defaultValue);
  if (shown !== undefined && shown !== false && !text.includes('(default')) extra.push(`default: ${String(shown)}`);
  if (option.mandatory) extra.push('required');
  return extra.length > 0 ? `${text} (${extra.join(', ')})` : text;
}

/** The first argument commander could not match to an option of `cmd`, if any. */
function firstUnknownOption(cmd: Command): string | undefined {
  const known = new Set(cmd.options.flatMap((o) => [o.long, o.short].filter((f): f is string => typeof f === 'string')));
  for (const arg of cmd.args) {
    if (arg === '--') return undefined;
    const flag = arg.split('=')[0] ?? arg;
    if (flag.startsWith('-') && flag.length > 1 && !known.has(flag)) return flag;
  }
  return undefined;
}

function applyConventions(cmd: Command): void {
  cmd
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({ outputError: (str, write) => write(oneLineError(cmd, str)) });
  // A mistyped flag (--confg) is the real error, not the required --config it failed to set.
  // Commander checks required options before unknown ones; these two methods are its (untyped) hooks.
  const internals = cmd as Command & CommanderErrorHooks;
  if (typeof internals.missingMandatoryOptionValue === 'function' && typeof internals.unknownOption === 'function') {
    const missing = internals.missingMandatoryOptionValue.bind(cmd);
    internals.missingMandatoryOptionValue = (option: Option) => {
      const unknown = firstUnknownOption(cmd);
      if (unknown !== undefined) internals.unknownOption(unknown);
      else missing(option);
    };
  }
  for (const sub of cmd.commands) applyConventions(sub);
}

/** Methods commander 14 calls to report these errors (public on the class, absent from its typings). */
interface CommanderErrorHooks {
  missingMandatoryOptionValue(option: Option): void;
  unknownOption(flag: string): void;
}

/** `--log-level` as every long-running command spells it. */
export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'least important log lines shown: debug | info | warn | error')
    .choices(['debug', 'info', 'warn', 'error'])
    .default('info');
}

/** `--log-format`: human-readable console lines (default) or JSON lines for log collectors. */
export function logFormatOption(): Option {
  return new Option('--log-format <format>', 'console log format: human | json (a --log-file always gets JSON lines)').choices(['human', 'json']).default('human');
}

/** A second, hidden spelling of an option (kept so old scripts work; help shows the canonical one). */
export function hiddenAlias(flags: string, canonical: string, parse?: (value: string) => unknown): Option {
  const option = new Option(flags, `alias of ${canonical}`).hideHelp();
  return parse ? option.argParser(parse) : option;
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
