/**
 * `patchfed simulate` (= `npm start`): a whole federation on this machine — phantom hospitals,
 * keys and configs in a run directory, a coordinator process and one site daemon process per
 * site on loopback — with a live per-round table, the dashboard URL and a JSON report.
 */
import type { Command } from 'commander';
import { CliError, hiddenAlias, parseChoice, parseFloatOption, parseIntOption, parseShapeOption } from '../main.ts';
import { SERVER_OPTIMIZER_NAMES, STRATEGY_NAMES, isRobustStrategy, type ServerOptimizerName, type StrategyName } from '../../shared/config/strategy.ts';
import type { SimulateOptions } from '../simulate/options.ts';

interface SimulateCliOptions {
  sites: number;
  rounds?: number;
  task: 'brain' | 'liver';
  mode: 'patch' | 'cascade' | 'full';
  /** Old spelling of --mode (hidden). */
  model?: 'patch' | 'cascade' | 'full';
  preset?: 'tiny' | 'cpu-small' | 'cpu-medium' | 'thesis';
  steps?: number;
  learningRate?: number;
  /** Old spelling of --learning-rate (hidden). */
  lr?: number;
  strategy: StrategyName;
  serverOptimizer?: ServerOptimizerName;
  dp?: string;
  cases?: string;
  shape?: number[];
  budgets?: string;
  siteStyles?: string;
  siteLabels?: string;
  foregroundRate?: number;
  runDir?: string;
  report?: string;
  port?: number;
  dropSite?: string;
  secureAggregation?: number | true;
  restartCoordinatorAt?: number;
  baselines: boolean;
  deadline?: number;
  seed?: number;
  keepOpen: boolean;
  backend?: 'auto' | 'cpu-fast' | 'cpu' | 'wasm' | 'tensorflow';
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

export function register(program: Command): void {
  const command = program
    .command('simulate')
    .description(
      'Run a whole federation on this machine: phantom hospitals with different scanners and memory budgets, ' +
        'a coordinator and one site-agent process per site on loopback, a live per-round table, the dashboard, and a JSON report.',
    );
  addSimulateOptions(command).action(async (o: SimulateCliOptions) => {
    const options = await simulateOptions(o);
    const { runSimulation } = await import('../simulate/run.ts');
    await untilInterrupted(async (signal) => {
      const { report } = await runSimulation(options, (line) => process.stdout.write(`${line}\n`), signal);
      if (signal.aborted) process.exitCode = 130;
      else if (report.summary.status !== 'complete') process.exitCode = 1;
    });
  });
}

function addSimulateOptions(command: Command): Command {
  return command
    .option('--sites <n>', 'number of simulated hospitals', parseIntOption('--sites', 1, 26), 3)
    .option('--rounds <n>', 'federated rounds (default 5; 2 with --preset thesis)', parseIntOption('--rounds', 1, 1000))
    .option('--task <task>', 'phantom task: brain | liver', parseChoice('--task', ['brain', 'liver'] as const), 'brain')
    .option('--mode <mode>', 'patch | cascade | full', parseChoice('--mode', ['patch', 'cascade', 'full'] as const), 'patch')
    .addOption(hiddenAlias('--model <mode>', '--mode', parseChoice('--model', ['patch', 'cascade', 'full'] as const)))
    .option('--preset <name>', 'U-Net preset: tiny | cpu-small | cpu-medium | thesis (default cpu-small)', parseChoice('--preset', ['tiny', 'cpu-small', 'cpu-medium', 'thesis'] as const))
    .option('--steps <n>', 'local training steps per round (default 60)', parseIntOption('--steps', 1, 1_000_000))
    .option('--learning-rate <lr>', 'learning rate (default 0.01)', parseFloatOption('--learning-rate', 1e-7, 1))
    .addOption(hiddenAlias('--lr <rate>', '--learning-rate', parseFloatOption('--lr', 1e-7, 1)))
    .option('--foreground-rate <f>', 'fraction of training patches forced to contain tumour (default 1)', parseFloatOption('--foreground-rate', 0, 1))
    .option('--strategy <name>', STRATEGY_NAMES.join(' | '), parseChoice('--strategy', STRATEGY_NAMES), 'fedavg')
    .option('--server-optimizer <name>', `server optimiser on the aggregate, with its defaults: ${SERVER_OPTIMIZER_NAMES.join(' | ')}`, parseChoice('--server-optimizer', SERVER_OPTIMIZER_NAMES))
    .option('--dp <mode:settings>', 'site-level differential privacy, e.g. central:z=1,c=0.5 or distributed:z=1,c=0.5[,delta=1e-5][,budget=8]')
    .option('--cases <n,...>', 'labelled phantom cases per site, cycled over the sites like --budgets, e.g. 16,8,4 for unequal hospitals (default 10; split 60/20/20)')
    .option('--shape <X,Y,Z>', 'phantom volume size (default 32,32,24)', parseShapeOption('--shape'))
    .option('--budgets <MB,...>', 'memory budget per site in MB, cycled over the sites (default 80,96,128)')
    .option('--site-labels <spec,...>', "what each site annotates, cycled: all | whole-tumour (one merged lesion label) | class ids joined by '+' (e.g. 1+3; the rest stored as background); trained with the marginal loss (default all)")
    .option('--site-styles <k,...>', 'phantom site style per site (scanner, case mix), cycled with jittered variants (default 2,0,3)')
    .option('--run-dir <dir>', 'where keys, configs, data, state, logs and the report go (default runs/simulate-<time>)')
    .option('--report <file>', 'write the JSON report here (default <run-dir>/report.json)')
    .option('--port <n>', 'coordinator port (default: a free loopback port)', parseIntOption('--port', 0, 65535))
    .option('--secure-aggregation [threshold]', 'secure aggregation: the coordinator sees only masked updates and their sum; threshold t (default: more than half of the sites)', parseIntOption('--secure-aggregation', 2, 64))
    .option('--drop-site <id@round>', 'kill that site\'s process in the middle of that round (it rejoins afterwards), e.g. site-b@2')
    .option('--restart-coordinator-at <round>', 'kill -9 the coordinator in the middle of that round and restart it', parseIntOption('--restart-coordinator-at', 1, 1000))
    .option('--baselines', 'also train local-only and pooled (centralised) baselines on the same split and compare', false)
    .option('--deadline <s>', 'round deadline in seconds (default 180)', parseIntOption('--deadline', 5, 86_400))
    .option('--seed <n>', 'seed for phantoms and the model (default 1)', parseIntOption('--seed', 0, 2 ** 31 - 1))
    .option('--keep-open', 'keep the coordinator and dashboard running after the last round, until Ctrl-C', false)
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast'] as const));
}

/** The CLI options checked and completed with the (preset's) defaults: what runSimulation takes. */
async function simulateOptions(o: SimulateCliOptions): Promise<SimulateOptions> {
  const { SIMULATE_DEFAULTS, parseCasesOption, parseDpOption, parseSiteLabelsOption, parseSiteDrop, presetDefaults } = await import('../simulate/options.ts');
  // A bigger preset brings the volume, budgets, steps and deadline it needs (explicit options still win).
  const defaults = { ...SIMULATE_DEFAULTS, ...presetDefaults(o.preset ?? SIMULATE_DEFAULTS.preset, o.model ?? o.mode) };
  const drop = o.dropSite === undefined ? undefined : parseSiteDrop(o.dropSite);
  const dp = o.dp === undefined ? undefined : parseDpOption(o.dp);
  if (typeof dp === 'string') throw new CliError(`${dp}.`);
  const combination = dp && isRobustStrategy(o.strategy) ? `--dp works with fedavg, fedprox and fedbn, not with --strategy ${o.strategy}` : null;
  if (combination) throw new CliError(`${combination}.`);
  if (drop === null) throw new CliError(`--drop-site must look like site-b@2 (a site id, '@', a round number), got '${o.dropSite}'.`);
  let budgetsMB = defaults.budgetsMB;
  if (o.budgets !== undefined) {
    budgetsMB = o.budgets.split(',').map((s) => Number(s.trim()));
    if (budgetsMB.length === 0 || budgetsMB.some((b) => !Number.isFinite(b) || b <= 0)) {
      throw new CliError(`--budgets must be positive numbers of MB separated by commas (e.g. 64,96,160), got '${o.budgets}'.`);
    }
  }
  const cases = o.cases === undefined ? defaults.cases : parseCasesOption(o.cases);
  if (typeof cases === 'string') throw new CliError(`${cases}.`);
  const siteLabels = o.siteLabels === undefined ? undefined : parseSiteLabelsOption(o.siteLabels, o.task);
  if (typeof siteLabels === 'string') throw new CliError(`${siteLabels}.`);
  let siteStyles = defaults.siteStyles;
  if (o.siteStyles !== undefined) {
    siteStyles = o.siteStyles.split(',').map((s) => Number(s.trim()));
    if (siteStyles.length === 0 || siteStyles.some((k) => !Number.isSafeInteger(k) || k < 0 || k > 1_000_000)) {
      throw new CliError(`--site-styles must be whole numbers ≥ 0 separated by commas (e.g. 2,0,3), got '${o.siteStyles}'.`);
    }
  }
  return {
    ...defaults,
    sites: o.sites,
    rounds: o.rounds ?? defaults.rounds,
    task: o.task,
    model: o.model ?? o.mode,
    preset: o.preset ?? defaults.preset,
    strategy: o.strategy,
    ...(o.serverOptimizer ? { serverOptimizer: o.serverOptimizer } : {}),
    ...(dp ? { dp } : {}),
    steps: o.steps ?? defaults.steps,
    learningRate: o.learningRate ?? o.lr ?? defaults.learningRate,
    cases,
    shape: (o.shape as [number, number, number] | undefined) ?? defaults.shape,
    budgetsMB,
    siteStyles,
    ...(siteLabels ? { siteLabels } : {}),
    foregroundRate: o.foregroundRate ?? defaults.foregroundRate,
    runDir: o.runDir ?? `runs/simulate-${timestamp()}`,
    reportPath: o.report,
    port: o.port ?? 0,
    drop,
    ...(o.secureAggregation !== undefined ? { secureAggregation: { threshold: o.secureAggregation === true ? Math.floor(o.sites / 2) + 1 : o.secureAggregation } } : {}),
    restartCoordinatorAt: o.restartCoordinatorAt,
    baselines: o.baselines,
    roundDeadlineSeconds: o.deadline ?? defaults.roundDeadlineSeconds,
    seed: o.seed ?? defaults.seed,
    keepOpen: o.keepOpen,
    backend: o.backend ?? defaults.backend,
  };
}

/** Runs with SIGINT/SIGTERM turned into an abort (a second one quits at once), handlers removed afterwards. */
async function untilInterrupted(run: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    if (++interrupts > 1) process.exit(130);
    process.stdout.write('\nStopping the simulation (Ctrl-C again to quit at once)…\n');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await run(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
