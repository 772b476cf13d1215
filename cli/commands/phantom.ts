/**
 * `patchfed phantom --task brain|liver --out DIR [--cases N] [--test-cases T] [--shape X,Y,Z]
 *                   [--seed S] [--site-style K] [--marker V] [--overwrite] [--json]`
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
  type PhantomDatasetResult,
  type PhantomTask,
} from '../../site-agent/phantom/index.ts';
import { CliError, parseChoice, parseFloatOption, parseIntOption, parseShapeOption } from '../main.ts';

interface PhantomCliOptions {
  task: PhantomTask;
  out: string;
  cases: number;
  testCases?: number;
  shape: [number, number, number];
  seed: number;
  siteStyle: number;
  marker?: number;
  overwrite?: boolean;
  json?: boolean;
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
    .option('--shape <X,Y,Z>', 'volume size in voxels', parsePhantomShape, [64, 64, 48] as [number, number, number])
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
      const result = await generatePhantomDataset({
        task: opts.task,
        out: opts.out,
        cases: opts.cases,
        testCases: opts.testCases,
        shape: opts.shape,
        seed: opts.seed,
        siteStyle: opts.siteStyle,
        marker: opts.marker,
        overwrite: opts.overwrite === true,
        onCase: showProgress ? (done, total, id) => process.stderr.write(`\rwrote ${done}/${total} ${id}\x1b[K`) : undefined,
      });
      if (showProgress) process.stderr.write('\r\x1b[K');
      process.stdout.write(opts.json ? `${JSON.stringify(resultJson(result, opts), null, 2)}\n` : summary(result, opts));
    });
}

function resultJson(r: PhantomDatasetResult, opts: PhantomCliOptions): object {
  return {
    dir: r.dir,
    datasetJson: r.datasetJson,
    task: opts.task,
    shape: opts.shape,
    seed: opts.seed,
    caseIds: r.caseIds,
    testCaseIds: r.testCaseIds,
    style: r.style,
    facts: r.facts,
    ...(r.marker ? { marker: { ...r.marker, bytes: r.marker.bytes.toString('hex') } } : {}),
  };
}

function summary(r: PhantomDatasetResult, opts: PhantomCliOptions): string {
  const s = r.style;
  const spacing = (opts.task === 'brain' ? s.mri.spacing : s.ct.spacing).join('×');
  const lines = [
    `phantom ${opts.task}: ${r.caseIds.length} training + ${r.testCaseIds.length} test cases of ${opts.shape.join('×')} voxels -> ${r.dir}`,
    `site style ${s.k} (archetype ${s.archetype}): stored ${s.orientation}, spacing ${spacing} mm, tilt ${s.rotationDeg}°`,
  ];
  if (r.marker) lines.push(`marker ${r.marker.value} in ${r.marker.caseId} (channel ${r.marker.channel}, voxels ${r.marker.firstVoxel}..${r.marker.firstVoxel + r.marker.count - 1}), bytes ${r.marker.bytes.toString('hex')}`);
  return lines.join('\n') + '\n';
}
