/**
 * `patchfed phantom --task brain|liver --out DIR [--cases N] [--test-cases T] [--shape X,Y,Z]
 *                   [--scale standard|thesis-like] [--context] [--seed S] [--site-style K]
 *                   [--marker V] [--overwrite] [--json]`
 *
 * Writes a synthetic hospital's dataset in the exact MSD layout (dataset.json, imagesTr/,
 * labelsTr/, imagesTs/). Same arguments, byte-identical files. Exit: 0 written, 1 refused
 * (e.g. non-empty output folder), 2 bad arguments.
 */
import { InvalidArgumentError, type Command } from 'commander';
import {
  generatePhantomDataset,
  PHANTOM_MAX_AXIS,
  PHANTOM_MAX_CASES,
  PHANTOM_MAX_VOXELS,
  PHANTOM_MIN_AXIS,
  PHANTOM_TASKS,
  THESIS_LIKE_SHAPE,
  THESIS_SLAB,
  type PhantomDatasetResult,
  type PhantomTask,
} from '../../site-agent/phantom/index.ts';
import { CliError, parseChoice, parseFloatOption, parseIntOption, parseShapeOption } from '../main.ts';

interface PhantomCliOptions {
  task: PhantomTask;
  out: string;
  cases: number;
  testCases?: number;
  shape?: [number, number, number];
  scale: PhantomScale;
  context?: boolean;
  seed: number;
  siteStyle: number;
  marker?: number;
  overwrite?: boolean;
  json?: boolean;
}

/**
 * Size presets: `standard` (64×64×48, no context structures) and `thesis-like` (a context phantom
 * of 32×32×160: the thesis's 16-voxel slab is 10% of the depth, as 16 of BraTS's 155 slices).
 */
export const PHANTOM_SCALES = ['standard', 'thesis-like'] as const;
export type PhantomScale = (typeof PHANTOM_SCALES)[number];
const STANDARD_SHAPE: [number, number, number] = [64, 64, 48];

/** --shape, --context and --scale together: explicit options win over the preset. */
export function resolvePhantomScale(scale: PhantomScale, shape: [number, number, number] | undefined, context: boolean | undefined): { shape: [number, number, number]; context: boolean } {
  const thesis = scale === 'thesis-like';
  return { shape: shape ?? (thesis ? [...THESIS_LIKE_SHAPE] : STANDARD_SHAPE), context: context ?? thesis };
}

/** parseShapeOption plus the generator's limits, so a bad shape is a usage error (exit 2). */
function parsePhantomShape(value: string): [number, number, number] {
  const shape = parseShapeOption('--shape', 3)(value) as [number, number, number];
  if (shape.some((n) => n < PHANTOM_MIN_AXIS || n > PHANTOM_MAX_AXIS)) {
    throw new InvalidArgumentError(`--shape entries must be between ${PHANTOM_MIN_AXIS} and ${PHANTOM_MAX_AXIS}, got '${value}'.`);
  }
  const voxels = shape[0] * shape[1] * shape[2];
  if (voxels > PHANTOM_MAX_VOXELS) {
    throw new InvalidArgumentError(`--shape ${shape.join('×')} has ${voxels} voxels; the phantom generator stops at ${PHANTOM_MAX_VOXELS} voxels (e.g. 160³ or 256×256×64).`);
  }
  return shape;
}

export function register(program: Command): void {
  program
    .command('phantom')
    .description('Write a synthetic hospital dataset (brain MR or liver CT) in the exact MSD layout, with a site-specific scanner style.')
    .requiredOption('--task <task>', `phantom type: ${PHANTOM_TASKS.join(' | ')}`, parseChoice('--task', PHANTOM_TASKS))
    .requiredOption('--out <dir>', 'output folder (created; must be empty unless --overwrite)')
    .option('--cases <n>', 'labelled training cases', parseIntOption('--cases', 1, PHANTOM_MAX_CASES), 10)
    .option('--test-cases <n>', 'unlabelled test cases in imagesTs/ (default: 20% of --cases)', parseIntOption('--test-cases', 0, PHANTOM_MAX_CASES))
    .option('--shape <X,Y,Z>', 'volume size in voxels (default 64,64,48; 32,32,160 with --scale thesis-like)', parsePhantomShape)
    .option('--scale <preset>', `standard | thesis-like (a context phantom of ${THESIS_LIKE_SHAPE.join('×')}: slabs of ${THESIS_SLAB} are 10% of its depth, as in the thesis)`, parseChoice('--scale', PHANTOM_SCALES), 'standard')
    .option('--context', 'context phantom: deep-grid anatomy plus structures only context beyond a slab tells apart (brain: oedema tracts and look-alikes; liver: a liver tongue and a look-alike bowel loop); default with --scale thesis-like')
    .option('--no-context', 'no context structures, also with --scale thesis-like (a control)')
    .option('--seed <s>', 'random seed (same seed and options: byte-identical files)', parseIntOption('--seed', 0, 2 ** 32 - 1), 1)
    .option('--site-style <k>', 'scanner and case-mix style of this hospital (integer ≥ 0)', parseIntOption('--site-style', 0, Number.MAX_SAFE_INTEGER), 0)
    .option('--marker <value>', 'plant this value in a few voxels of the first training image (privacy tests)', parseFloatOption('--marker'))
    .option('--overwrite', 'replace an earlier phantom dataset in --out')
    .option('--json', 'print the result (case ids, site style, marker bytes) as JSON')
    .action(async (opts: PhantomCliOptions) => {
      if (opts.task === 'liver' && opts.marker !== undefined && !(Number.isInteger(opts.marker) && opts.marker >= -32768 && opts.marker <= 32767)) {
        throw new CliError(`--marker must be an integer in -32768..32767 for --task liver (int16 CT), got ${opts.marker}.`);
      }
      const showProgress = !opts.json && process.stderr.isTTY === true;
      const { shape, context } = resolvePhantomScale(opts.scale, opts.shape, opts.context);
      const result = await generatePhantomDataset({
        task: opts.task,
        out: opts.out,
        cases: opts.cases,
        testCases: opts.testCases,
        shape,
        context,
        seed: opts.seed,
        siteStyle: opts.siteStyle,
        marker: opts.marker,
        overwrite: opts.overwrite === true,
        onCase: showProgress ? (done, total, id) => process.stderr.write(`\rwrote ${done}/${total} ${id}\x1b[K`) : undefined,
      });
      if (showProgress) process.stderr.write('\r\x1b[K');
      const resolved = { ...opts, shape, context };
      process.stdout.write(opts.json ? `${JSON.stringify(resultJson(result, resolved), null, 2)}\n` : summary(result, resolved));
    });
}

type ResolvedOptions = PhantomCliOptions & { shape: [number, number, number]; context: boolean };

function resultJson(r: PhantomDatasetResult, opts: ResolvedOptions): object {
  return {
    dir: r.dir,
    datasetJson: r.datasetJson,
    task: opts.task,
    shape: opts.shape,
    context: opts.context,
    spacing: r.spacing,
    seed: opts.seed,
    caseIds: r.caseIds,
    testCaseIds: r.testCaseIds,
    style: r.style,
    facts: r.facts,
    ...(r.marker ? { marker: { ...r.marker, bytes: r.marker.bytes.toString('hex') } } : {}),
  };
}

function summary(r: PhantomDatasetResult, opts: ResolvedOptions): string {
  const s = r.style;
  const spacing = r.spacing.map((v) => +v.toFixed(3)).join('×');
  const lines = [
    `phantom ${opts.task}: ${r.caseIds.length} training + ${r.testCaseIds.length} test cases of ${opts.shape.join('×')} voxels -> ${r.dir}`,
    `site style ${s.k} (archetype ${s.archetype}): stored ${s.orientation}, spacing ${spacing} mm, tilt ${s.rotationDeg}°`,
  ];
  if (opts.context) {
    const what = opts.task === 'brain' ? 'oedema tracts along z and tumour-free look-alike tracts' : 'an inferior liver tongue along z and a liver-dense look-alike bowel loop';
    const stretch = r.stretch > 1 ? `in-plane voxels ×${+r.stretch.toFixed(3)} so anatomy keeps its proportions; ` : '';
    lines.push(`context phantom: ${stretch}${what}; a ${THESIS_SLAB}-voxel slab is ${((100 * THESIS_SLAB) / opts.shape[2]).toFixed(0)}% of the depth`);
    // Over the training cases (their labels are written): how much of the class hangs on context.
    const facts = r.caseIds.map((id) => r.facts[id]!).filter((f) => f.context);
    const sum = (pick: (f: (typeof facts)[number]) => number) => facts.reduce((a, f) => a + pick(f), 0);
    const classVoxels = sum((f) => f.labelVoxels[1] ?? 0);
    const tube = sum((f) => f.context!.connectedVoxels);
    if (classVoxels > 0 && tube > 0) {
      const [cls, tubeName, landmark] = opts.task === 'brain' ? ['oedema', 'tract', 'tumour'] : ['liver', 'tongue', 'liver body'];
      const pc = (x: number) => `${((100 * x) / classVoxels).toFixed(0)}%`;
      lines.push(
        `  ${cls} voxels on the ${tubeName}: ${pc(tube)}; beyond a ${THESIS_SLAB}-voxel slab from the ${landmark}: ${pc(sum((f) => f.context!.connectedBeyondSlab))}; ` +
          `look-alike: ${(sum((f) => f.context!.lookalikeVoxels) / tube).toFixed(2)}× the ${tubeName}'s voxels (training cases)`,
      );
    }
  }
  if (r.marker) lines.push(`marker ${r.marker.value} in ${r.marker.caseId} (channel ${r.marker.channel}, voxels ${r.marker.firstVoxel}..${r.marker.firstVoxel + r.marker.count - 1}), bytes ${r.marker.bytes.toString('hex')}`);
  return lines.join('\n') + '\n';
}
