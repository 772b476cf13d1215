/**
 * `patchfed plan`: what fits in a memory budget. From a site config (the dataset's largest case)
 * or an explicit geometry, prints the estimated training peak of the candidate patches/batches,
 * the chosen one, and what the full 3D U-Net would need on the whole volume.
 */
import type { Command } from 'commander';
import { MODEL_PRESETS, resolveArchitecture, type Architecture, type Mode, type Norm, type PresetName } from '../../shared/config/model.ts';
import type { Plan } from '../../site-agent/planner/plan.ts';
import { CliError, parseChoice, parseFloatOption, parseIntOption, parseShapeOption } from '../main.ts';

/** The real MSD geometries of the thesis (Table 2.1), for sizing hardware before data arrives. */
export const MSD_GEOMETRIES = {
  'msd-brain': { shape: [240, 240, 155] as [number, number, number], channels: 4, classes: 4, cascadeFactor: 0.3 },
  'msd-liver': { shape: [512, 512, 771] as [number, number, number], channels: 1, classes: 3, cascadeFactor: 0.2 },
} as const;

interface PlanCliOptions {
  config?: string;
  geometry?: keyof typeof MSD_GEOMETRIES;
  shape?: number[];
  channels?: number;
  classes?: number;
  budgetMb?: number;
  mode?: Mode;
  preset?: PresetName;
  base?: number;
  depth?: number;
  norm?: Norm;
  cascadeFactor?: number;
  maxBatch?: number;
  margin?: number;
  json?: boolean;
  calibrate?: boolean;
  large?: boolean;
  backend?: string;
}

export function register(program: Command): void {
  program
    .command('plan')
    .description('Estimate peak training memory per mode and pick the largest patch (then batch) that fits a memory budget.')
    .option('--config <file>', 'site config: plan for its dataset (largest case), budget and model')
    .option('--geometry <name>', `a real MSD geometry: ${Object.keys(MSD_GEOMETRIES).join(', ')}`, parseChoice('--geometry', Object.keys(MSD_GEOMETRIES) as (keyof typeof MSD_GEOMETRIES)[]))
    .option('--shape <X,Y,Z>', 'volume shape (instead of a dataset)', parseShapeOption('--shape'))
    .option('--channels <C>', 'image channels (modalities)', parseIntOption('--channels', 1, 64))
    .option('--classes <K>', 'classes including background', parseIntOption('--classes', 2, 255))
    .option('--budget-mb <M>', 'memory budget in MiB', parseFloatOption('--budget-mb', 1))
    .option('--mode <mode>', 'full | patch | cascade', parseChoice('--mode', ['full', 'patch', 'cascade'] as const))
    .option('--preset <name>', `model preset: ${Object.keys(MODEL_PRESETS).join(', ')}`, parseChoice('--preset', Object.keys(MODEL_PRESETS) as PresetName[]))
    .option('--base <n>', 'channels of the first U-Net level (overrides the preset)', parseIntOption('--base', 1, 256))
    .option('--depth <n>', 'U-Net levels (overrides the preset)', parseIntOption('--depth', 1, 7))
    .option('--norm <kind>', 'batch | instance', parseChoice('--norm', ['batch', 'instance'] as const))
    .option('--cascade-factor <f>', 'cascade stage-1 downsampling factor (0,1]', parseFloatOption('--cascade-factor', 0.01, 1))
    .option('--max-batch <n>', 'largest batch considered', parseIntOption('--max-batch', 1, 64))
    .option('--margin <f>', 'safety margin added to estimates (default 0.15)', parseFloatOption('--margin', 0, 2))
    .option('--json', 'machine-readable output (keys documented in the README)')
    .option('--calibrate', 'instead of planning: train a few steps of reference configurations and print estimated vs measured peak memory')
    .option('--large', 'with --calibrate: the larger configurations (hundreds of MB each, a few minutes)')
    .option('--backend <name>', 'with --calibrate: backend to measure on (auto, cpu-fast, cpu, ...)', 'auto')
    .action(async (opts: PlanCliOptions) => {
      if (opts.calibrate) await runCalibration(opts);
      else await runPlan(opts);
    });
}

/** Estimated vs measured training peak on reference configurations (site-agent/planner/calibrate.ts). */
async function runCalibration(opts: PlanCliOptions): Promise<void> {
  const { selectBackend, parseBackendChoice, assertTrainableBackend } = await import('../../site-agent/backend/index.ts');
  const { calibrate, formatCalibrationRow, SMALL_CALIBRATION_SET, LARGE_CALIBRATION_SET } = await import('../../site-agent/planner/calibrate.ts');
  const backend = await selectBackend(parseBackendChoice(opts.backend ?? 'auto'), (m) => process.stderr.write(`backend: ${m}\n`));
  assertTrainableBackend(backend);
  const rows = await calibrate(opts.large ? LARGE_CALIBRATION_SET : SMALL_CALIBRATION_SET, (r) => {
    if (!opts.json) process.stdout.write(`${formatCalibrationRow(r)}\n`);
  });
  const worst = Math.max(...rows.map((r) => Math.abs(r.ratio - 1)));
  if (opts.json) {
    const out = rows.map((r) => ({
      label: r.config.label,
      inChannels: r.config.inChannels,
      classes: r.config.classes,
      model: r.config.arch,
      patch: r.config.patch,
      batch: r.config.batch,
      pass: r.config.pass ?? 'training',
      backend: r.backend,
      estimatedBytes: Math.round(r.estimatedBytes),
      measuredBytes: r.measuredBytes,
      measuredEngineBytes: r.measured.engineBytes,
      measuredWorkspaceBytes: r.measured.workspaceBytes,
      rssBytes: r.measured.rssBytes,
      ratio: r.ratio,
    }));
    process.stdout.write(`${JSON.stringify({ backend: backend.name, worstDeviation: worst, rows: out }, null, 2)}\n`);
  } else {
    process.stdout.write(`worst deviation ${(worst * 100).toFixed(1)}% over ${rows.length} configurations on ${backend.name}\n`);
  }
}

/** What to plan for: the geometry, budget and model from a site config, an MSD geometry or the flags. */
interface PlanInput {
  shape: [number, number, number];
  channels: number;
  classes: number;
  budgetMB: number | undefined;
  mode: Mode;
  spec: { preset?: PresetName; base?: number; depth?: number; norm: Norm };
  cascadeFactor: number | undefined;
  /** Where the geometry came from, for the first line of the output. */
  source: string;
}

async function runPlan(opts: PlanCliOptions): Promise<void> {
  const { planTraining, formatBytes } = await import('../../site-agent/planner/plan.ts');
  const { kernelWorkspaceBytes } = await import('../../site-agent/planner/workspace.ts');
  const { shape, channels, classes, budgetMB, mode, spec, cascadeFactor, source } = await planInput(opts);
  if (budgetMB === undefined) throw new CliError('--budget-mb is required (or a --config that declares memoryBudgetMB)');
  const arch = resolveArchitecture(spec);
  const plan = planTraining({
    shape,
    channels,
    classes,
    mode,
    arch,
    budgetBytes: budgetMB * 1024 * 1024,
    safetyMargin: opts.margin,
    cascadeFactor,
    maxBatch: opts.maxBatch,
    workspaceBytes: kernelWorkspaceBytes(),
  });
  if (opts.json) process.stdout.write(`${JSON.stringify(planJson(plan, source, mode, arch), null, 2)}\n`);
  else process.stdout.write(`${planLines(plan, source, mode, arch, formatBytes).join('\n')}\n`);
  if (!plan.fits) process.exitCode = 3;
}

async function planInput(opts: PlanCliOptions): Promise<PlanInput> {
  const mode: Mode = opts.mode ?? 'patch';
  const spec = { preset: opts.preset, base: opts.base, depth: opts.depth, norm: opts.norm ?? ('instance' as Norm) };
  if (opts.config) {
    const { loadSiteConfig } = await import('../../site-agent/site-config.ts');
    const { scanMsdDataset } = await import('../../site-agent/data/index.ts');
    const cfg = loadSiteConfig(opts.config);
    const scan = await scanMsdDataset(cfg.dataset);
    if (scan.cases.length === 0) throw new CliError(`dataset ${cfg.dataset} has no usable case to plan for`, 1);
    const shape: [number, number, number] = [0, 0, 0];
    for (const c of scan.cases) for (let i = 0; i < 3; i++) shape[i] = Math.max(shape[i] ?? 0, c.shape[i] ?? 0);
    return {
      shape,
      channels: scan.modalities.length,
      classes: scan.labels.length,
      budgetMB: opts.budgetMb ?? cfg.memoryBudgetMB,
      mode: opts.mode ?? cfg.model.mode,
      spec: { preset: opts.preset ?? cfg.model.preset, base: opts.base ?? cfg.model.base, depth: opts.depth ?? cfg.model.depth, norm: opts.norm ?? cfg.model.norm },
      cascadeFactor: opts.cascadeFactor ?? cfg.model.cascadeFactor,
      source: `dataset ${scan.name} (${scan.cases.length} cases, largest ${shape.join('x')})`,
    };
  }
  if (opts.geometry) {
    const g = MSD_GEOMETRIES[opts.geometry];
    const shape: [number, number, number] = [...g.shape];
    const channels = opts.channels ?? g.channels;
    const classes = opts.classes ?? g.classes;
    return { shape, channels, classes, budgetMB: opts.budgetMb, mode, spec, cascadeFactor: opts.cascadeFactor ?? g.cascadeFactor, source: `${opts.geometry} ${shape.join('x')}x${channels}ch` };
  }
  if (!opts.shape || !opts.channels || !opts.classes) {
    throw new CliError('give --config <site config>, or --geometry msd-brain|msd-liver, or all of --shape, --channels and --classes');
  }
  const shape = opts.shape as [number, number, number];
  return { shape, channels: opts.channels, classes: opts.classes, budgetMB: opts.budgetMb, mode, spec, cascadeFactor: opts.cascadeFactor, source: `${shape.join('x')}x${opts.channels}ch` };
}

/** `--json` output (keys documented in the README). */
function planJson(plan: Plan, source: string, mode: Mode, arch: Architecture): object {
  const chosen = (s: (typeof plan.stages)[number]) => (s.chosen ? { patch: s.chosen.patch, batch: s.chosen.batch, peakBytes: Math.round(s.chosen.estimate.total) } : null);
  const last = plan.stages.at(-1);
  return {
    source,
    mode,
    model: arch,
    budgetBytes: plan.budgetBytes,
    safetyMargin: plan.safetyMargin,
    fits: plan.fits,
    patch: last?.chosen?.patch ?? null,
    batch: last?.chosen?.batch ?? null,
    peakBytes: plan.peakBytes === null ? null : Math.round(plan.peakBytes),
    fullVolumeBytes: Math.round(plan.fullVolumeBytes),
    fullVolumeInferenceBytes: Math.round(plan.fullVolumeInferenceBytes),
    stages: plan.stages.map((s) => ({
      stage: s.stage,
      inChannels: s.inChannels,
      volumeShape: s.volumeShape,
      chosen: chosen(s),
      breakdown: s.chosen?.estimate ?? null,
      candidates: s.candidates.map((c) => ({ patch: c.patch, batch: c.batch, peakBytes: Math.round(c.estimate.total), fits: c.fits })),
    })),
    message: plan.message,
  };
}

/** Human-readable output: the candidates per stage (long lists shortened), the chosen one's breakdown. */
function planLines(plan: Plan, source: string, mode: Mode, arch: Architecture, formatBytes: (bytes: number) => string): string[] {
  const lines = [`plan for ${source}, mode ${mode}, U-Net base ${arch.base} depth ${arch.depth} ${arch.norm}norm, budget ${formatBytes(plan.budgetBytes)}`];
  for (const s of plan.stages) {
    lines.push(`  ${s.stage} (volume ${s.volumeShape.join('x')}, ${s.inChannels} input channels):`);
    const shown = s.candidates.length > 12 ? [...s.candidates.slice(0, 3), null, ...s.candidates.slice(-8)] : s.candidates;
    for (const c of shown) {
      if (!c) {
        lines.push('      …');
        continue;
      }
      const mark = c === s.chosen ? '→' : c.fits ? ' ' : '✗';
      lines.push(`    ${mark} patch ${c.patch.join('x').padEnd(12)} batch ${String(c.batch).padEnd(2)} ~${formatBytes(c.estimate.total)}`);
    }
    if (s.chosen) {
      const e = s.chosen.estimate;
      lines.push(
        `    chosen: weights ${formatBytes(e.weights)}, gradients ${formatBytes(e.gradients)}, Adam ${formatBytes(e.optimizer)}, tape (saved tensors + activation gradients) ${formatBytes(e.activations)}, batch ${formatBytes(e.io)}, conv workspace ${formatBytes(e.workspace)}, runtime ${formatBytes(e.overhead)}`,
      );
    }
  }
  lines.push(plan.message);
  return lines;
}
