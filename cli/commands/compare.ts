/**
 * `patchfed compare --task brain|liver [--scale thesis-like|small] [--out DIR] [--steps N] ...`:
 * the thesis's comparison on a phantom — full, patch-wise and cascade U-Nets trained on the same
 * split; per-class Dice, HD95 and NSD, inference time and peak memory (measured and estimated) per
 * mode next to the thesis's numbers, how each mode labels a context phantom's look-alikes, and the
 * planner's estimates for the real MSD geometry. Prints markdown; writes compare.json and
 * compare.md into --out.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { MODEL_PRESETS, ModeSchema, type Mode, type Norm, type PresetName } from '../../shared/config/model.ts';
import { parseChoice, parseFloatOption, parseIntOption, parseShapeOption } from '../main.ts';
import { COMPARE_SCALES, describeScale, type CompareScale } from '../../site-agent/run/compare-scales.ts';

const SCALES = Object.keys(COMPARE_SCALES) as CompareScale[];

interface CompareCliOptions {
  task: 'brain' | 'liver';
  scale: CompareScale;
  context?: boolean;
  modes?: Mode[];
  out?: string;
  steps?: number;
  cases?: number;
  shape?: [number, number, number];
  slab: number;
  cascadeFactor?: number;
  learningRate: number;
  foregroundRate?: number;
  siteStyle?: number;
  preset?: PresetName;
  base?: number;
  depth?: number;
  norm?: Norm;
  budgetMb?: number;
  nsdToleranceMm?: number;
  seed: number;
  backend: string;
  json?: boolean;
}

/** Phantom limits (site-agent/phantom) without importing the generator at start-up. */
const MIN_AXIS = 8;
const MAX_VOXELS = 2 ** 22;

function parseCompareShape(value: string): [number, number, number] {
  const shape = parseShapeOption('--shape', 3)(value) as [number, number, number];
  if (shape.some((n) => n < MIN_AXIS)) throw new InvalidArgumentError(`--shape entries must be at least ${MIN_AXIS}, got '${value}'.`);
  if (shape[0] * shape[1] * shape[2] > MAX_VOXELS) throw new InvalidArgumentError(`--shape ${shape.join('×')} is larger than the phantom generator's ${MAX_VOXELS} voxels.`);
  return shape;
}

function parseModes(value: string): Mode[] {
  const modes = value.split(',').map((m) => m.trim());
  const bad = modes.filter((m) => !ModeSchema.safeParse(m).success);
  if (bad.length > 0 || modes.length === 0) throw new InvalidArgumentError(`--modes must be a comma-separated subset of full, patch, cascade, got '${value}'.`);
  if (new Set(modes).size !== modes.length) throw new InvalidArgumentError(`--modes lists a mode twice: '${value}'.`);
  // Always in the thesis's order.
  return (['full', 'patch', 'cascade'] as const).filter((m) => modes.includes(m));
}

export function register(program: Command): void {
  program
    .command('compare')
    .description(
      "Reproduce the thesis's comparison on a phantom: train full, patch-wise and cascade U-Nets on the same split; Dice, HD95, NSD, inference time and peak memory per mode next to the thesis's numbers, plus the planner's estimate for the real MSD geometry.",
    )
    .requiredOption('--task <task>', 'brain | liver', parseChoice('--task', ['brain', 'liver'] as const))
    .option(
      '--scale <preset>',
      `${SCALES.map((k) => `${k}: ${describeScale(k)}`).join('; ')} (a 16-voxel slab is 10% of the thesis-like depth, as 16 of BraTS's 155 slices)`,
      parseChoice('--scale', SCALES),
      'thesis-like',
    )
    .option('--context', "context phantom (default with --scale thesis-like): structures only context beyond a slab tells apart")
    .option('--no-context', 'standard phantom at the chosen size (a control: same depth, nothing that needs context)')
    .option('--modes <list>', 'modes to train, comma-separated (default full,patch,cascade)', parseModes)
    .option('--out <dir>', 'output folder for the phantom, the models and compare.json / compare.md (default ./compare-<task>)')
    .option('--steps <n>', 'training steps per stage (default: the scale\'s)', parseIntOption('--steps', 1, 1_000_000))
    .option('--cases <n>', 'labelled phantom cases, split 60/20/20 train/validation/test (default: the scale\'s)', parseIntOption('--cases', 3, 1000))
    .option('--shape <X,Y,Z>', 'phantom volume size (default: the scale\'s)', parseCompareShape)
    .option('--slab <n>', 'patch thickness along the last axis for patch-wise stages (thesis: 16)', parseIntOption('--slab', 1, 1024), 16)
    .option('--cascade-factor <f>', 'cascade stage-1 downsampling factor (thesis: 0.3 brain / 0.2 liver at full MSD size; phantoms default to 0.5)', parseFloatOption('--cascade-factor', 0.01, 1))
    .option('--learning-rate <lr>', "Adam learning rate (the thesis's 3e-4 needs thousands of steps)", parseFloatOption('--learning-rate', 1e-7, 1), 1e-2)
    .option('--foreground-rate <f>', "fraction of training patches forced to contain foreground (default: the scale's)", parseFloatOption('--foreground-rate', 0, 1))
    .option('--site-style <k>', "phantom scanner / case-mix style (default: the scale's)", parseIntOption('--site-style', 0, 1_000_000))
    .option('--preset <name>', `model preset: ${Object.keys(MODEL_PRESETS).join(', ')} (default: the scale's base and depth)`, parseChoice('--preset', Object.keys(MODEL_PRESETS) as PresetName[]))
    .option('--base <n>', 'channels of the first U-Net level (overrides the preset)', parseIntOption('--base', 1, 256))
    .option('--depth <n>', 'U-Net levels (overrides the preset)', parseIntOption('--depth', 1, 7))
    .option('--norm <kind>', 'batch | instance (default instance)', parseChoice('--norm', ['batch', 'instance'] as const))
    .option('--budget-mb <M>', 'memory budget for every mode (default: what the full mode needs, +20%)', parseFloatOption('--budget-mb', 1))
    .option('--nsd-tolerance-mm <t>', 'NSD tolerance (default: the largest voxel spacing)', parseFloatOption('--nsd-tolerance-mm', 0))
    .option('--seed <s>', 'seed of the phantom, the split and the initialisation', parseIntOption('--seed', 0, 2 ** 31 - 1), 1)
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']), 'auto')
    .option('--json', 'print the report as JSON instead of markdown')
    .action(async (opts: CompareCliOptions) => {
      const { runCompare, writeCompareReport } = await import('../../site-agent/run/compare.ts');
      const { formatCompareMarkdown } = await import('../../site-agent/run/compare-report.ts');
      const preset = COMPARE_SCALES[opts.scale];
      // An explicit --preset replaces the scale's base and depth; --base / --depth override either.
      const model = opts.preset ? { preset: opts.preset } : { base: preset.base, depth: preset.depth };
      const out = opts.out ?? `compare-${opts.task}`;
      const report = await runCompare({
        task: opts.task,
        scale: opts.scale,
        outDir: out,
        steps: opts.steps ?? preset.steps,
        cases: opts.cases ?? preset.cases,
        shape: opts.shape ?? [...preset.shape],
        context: opts.context ?? preset.context,
        modes: opts.modes,
        slab: opts.slab,
        cascadeFactor: opts.cascadeFactor,
        learningRate: opts.learningRate,
        foregroundRate: opts.foregroundRate ?? preset.foregroundRate,
        siteStyle: opts.siteStyle ?? preset.siteStyle,
        ...model,
        ...(opts.base !== undefined ? { base: opts.base } : {}),
        ...(opts.depth !== undefined ? { depth: opts.depth } : {}),
        norm: opts.norm,
        budgetMB: opts.budgetMb,
        nsdToleranceMm: opts.nsdToleranceMm,
        seed: opts.seed,
        backend: opts.backend,
        log: (line) => process.stderr.write(`compare: ${line}\n`),
      });
      const markdown = formatCompareMarkdown(report);
      const paths = writeCompareReport(out, report, markdown);
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : markdown);
      process.stderr.write(`compare: wrote ${paths.json} and ${paths.markdown}\n`);
    });
}
