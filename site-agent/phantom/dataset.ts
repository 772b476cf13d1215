/**
 * A synthetic "hospital" on disk, in exactly the Medical Segmentation Decathlon layout:
 * DIR/dataset.json, imagesTr/, labelsTr/, imagesTs/, written through the real NIfTI writer so
 * everything downstream exercises the same loading path as real data.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { writeNifti } from '../../shared/nifti/index.ts';
import { BRAIN_CHANNELS, BRAIN_LABELS, BRAIN_MODALITIES, generateBrainCase } from './brain.ts';
import { LIVER_LABELS, LIVER_MODALITIES, generateLiverCase } from './liver.ts';
import { siteStyle, type SiteStyle } from './site-style.ts';
import { contextGrid } from './context.ts';
import { PHANTOM_TASKS, type CaseFacts, type PhantomCase, type PhantomTask } from './types.ts';
import type { AnnotatedLabels } from '../../shared/config/site.ts';
import { annotatedLabelMap, isFullAnnotation } from '../data/annotated-labels.ts';
import { phantomAnnotation } from './annotation.ts';

export const PHANTOM_GENERATOR = 'patchfed-phantom';
export const PHANTOM_GENERATOR_VERSION = 1;

/**
 * Refused before allocating. Generation needs ~60 bytes per voxel (brain: 4 float32 channels,
 * their stored copy, texture and bias fields), so 2^22 voxels (160³, 256×256×64) stays near 250 MB.
 */
export const PHANTOM_MAX_AXIS = 1024;
export const PHANTOM_MIN_AXIS = 8;
export const PHANTOM_MAX_VOXELS = 2 ** 22;
export const PHANTOM_MAX_CASES = 10_000;
/** Voxels of training case 0 (channel 0) that carry the marker value. */
export const MARKER_VOXELS = 8;

export interface PhantomCaseOptions {
  task: PhantomTask;
  shape: [number, number, number];
  seed: number;
  /** Site style K (integer ≥ 0). */
  siteStyle: number;
  /** 0-based: training cases first, then test cases. */
  caseIndex: number;
  /** Context phantom (context.ts): deep grid, stretched in-plane voxels, context-dependent structures. */
  context?: boolean;
}

export interface PhantomDatasetOptions {
  task: PhantomTask;
  /** Labelled training cases (≥ 1). */
  cases: number;
  /** Unlabelled test cases; default round(20% of cases). */
  testCases?: number;
  shape: [number, number, number];
  seed: number;
  siteStyle: number;
  /** Context phantom (context.ts; README "Context phantoms"). */
  context?: boolean;
  /** Output folder; created if missing. */
  out: string;
  /**
   * Plant this value in MARKER_VOXELS consecutive voxels (channel 0, stored order) of training
   * case 0, so a test can search traffic for its bytes. Brain: any float32; liver: an int16.
   */
  marker?: number;
  /** Replace an earlier phantom dataset in `out` (only ever one this generator wrote). */
  overwrite?: boolean;
  /**
   * Partial annotation (annotation.ts): write label maps as a site annotating only these classes
   * would draw them (absent = every class). Recorded in dataset.json's `phantom` block.
   */
  annotatedLabels?: AnnotatedLabels;
  /** Called after each case is written (progress reporting). */
  onCase?: (written: number, total: number, caseId: string) => void;
}

export interface PlantedMarker {
  caseId: string;
  /** Absolute path of the image file holding it. */
  file: string;
  /** The value as stored (float32- or int16-rounded). */
  value: number;
  channel: number;
  /** Linear voxel index (x fastest, within the channel) of the first marked voxel. */
  firstVoxel: number;
  count: number;
  /** The stored little-endian bytes of the run of marked voxels (what a leak would contain). */
  bytes: Buffer;
}

export interface PhantomDatasetResult {
  dir: string;
  datasetJson: string;
  /** Training case ids, in dataset.json order. */
  caseIds: string[];
  testCaseIds: string[];
  style: SiteStyle;
  /** Voxel spacing written to every header (mm): the style's, or a context phantom's stretched in-plane spacing. */
  spacing: [number, number, number];
  /** In-plane voxel stretch of a context phantom (1 for standard phantoms; context.ts). */
  stretch: number;
  /** What was planted per case id (tumour/lesion counts, voxels per label). */
  facts: Record<string, CaseFacts>;
  marker?: PlantedMarker;
}

function fail(message: string, subject?: string): never {
  throw new PatchFedError('phantom-options', message, { subject });
}

function checkInteger(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    fail(`${name} must be an integer between ${min} and ${max}, got ${String(v)}.`, name);
  }
  return v;
}

function checkShape(shape: unknown, channels: number): [number, number, number] {
  if (!Array.isArray(shape) || shape.length !== 3) fail(`shape must be three integers [X, Y, Z], got ${JSON.stringify(shape)}.`, 'shape');
  shape.forEach((n, a) => checkInteger(`shape[${a}]`, n, PHANTOM_MIN_AXIS, PHANTOM_MAX_AXIS));
  const voxels = shape[0] * shape[1] * shape[2];
  if (voxels > PHANTOM_MAX_VOXELS) {
    fail(`shape ${shape.join('×')} has ${voxels} voxels per channel (×${channels}); the phantom generator stops at ${PHANTOM_MAX_VOXELS} voxels (e.g. 160³ or 256×256×64).`, 'shape');
  }
  return [shape[0], shape[1], shape[2]];
}

function checkContext(context: unknown): boolean {
  if (context !== undefined && typeof context !== 'boolean') fail(`context must be true or false, got ${String(context)}.`, 'context');
  return context === true;
}

function checkTask(task: unknown): PhantomTask {
  if (!PHANTOM_TASKS.includes(task as PhantomTask)) fail(`task must be one of ${PHANTOM_TASKS.join(', ')}, got '${String(task)}'.`, 'task');
  return task as PhantomTask;
}

/** The value a marker will have once stored, or a refusal naming why it cannot be stored. */
function storedMarker(task: PhantomTask, marker: number): number {
  if (!Number.isFinite(marker)) fail(`marker must be a finite number, got ${marker}.`, 'marker');
  if (task === 'liver') {
    if (!Number.isInteger(marker) || marker < -32768 || marker > 32767) fail(`marker for the liver task (int16 CT) must be an integer in -32768..32767, got ${marker}.`, 'marker');
    return marker;
  }
  const f = Math.fround(marker);
  if (!Number.isFinite(f)) fail(`marker ${marker} does not fit in float32.`, 'marker');
  return f;
}

/** One case in memory (no files): the simulator, tests and benchmarks use this directly. */
export function generatePhantomCase(opts: PhantomCaseOptions): PhantomCase {
  const task = checkTask(opts.task);
  const shape = checkShape(opts.shape, task === 'brain' ? BRAIN_CHANNELS : 1);
  const seed = checkInteger('seed', opts.seed, 0, 2 ** 32 - 1);
  const k = checkInteger('siteStyle', opts.siteStyle, 0, Number.MAX_SAFE_INTEGER);
  const caseIndex = checkInteger('caseIndex', opts.caseIndex, 0, 2 * PHANTOM_MAX_CASES);
  const key = { task, seed, style: siteStyle(k), caseIndex, context: checkContext(opts.context) };
  return task === 'brain' ? generateBrainCase(key, shape) : generateLiverCase(key, shape);
}

/** MSD-style ids: BRATS_s<K>_001 / liver_s<K>_001, numbered across training then test cases. */
export function phantomCaseIds(task: PhantomTask, k: number, cases: number, testCases: number): { training: string[]; test: string[] } {
  const prefix = task === 'brain' ? 'BRATS' : 'liver';
  const width = Math.max(3, String(cases + testCases).length);
  const id = (n: number): string => `${prefix}_s${k}_${String(n + 1).padStart(width, '0')}`;
  return {
    training: Array.from({ length: cases }, (_, i) => id(i)),
    test: Array.from({ length: testCases }, (_, i) => id(cases + i)),
  };
}

function datasetJson(task: PhantomTask, opts: { seed: number; k: number; shape: number[]; context: boolean; annotatedLabels?: AnnotatedLabels }, ids: { training: string[]; test: string[] }): object {
  const brain = task === 'brain';
  const style = siteStyle(opts.k);
  const context = opts.context
    ? brain
      ? '; context phantom: oedema tracts along z and tumour-free look-alike tracts'
      : '; context phantom: an inferior liver tongue along z and liver-dense look-alike bowel loops'
    : '';
  return {
    name: brain ? 'BRATS' : 'LiTS',
    description: brain
      ? `Synthetic gliomas (oedema, non-enhancing core, enhancing rim) in multi-parametric MR phantoms, site style ${opts.k} (${style.orientation})${context}`
      : `Synthetic liver and liver lesions in abdominal CT phantoms, site style ${opts.k} (${style.orientation})${context}`,
    reference: 'PatchFed phantom generator: synthetic, no patient data',
    licence: 'CC0-1.0',
    release: `${PHANTOM_GENERATOR} ${PHANTOM_GENERATOR_VERSION}`,
    tensorImageSize: brain ? '4D' : '3D',
    modality: brain ? BRAIN_MODALITIES : LIVER_MODALITIES,
    labels: brain ? BRAIN_LABELS : LIVER_LABELS,
    numTraining: ids.training.length,
    numTest: ids.test.length,
    training: ids.training.map((id) => ({ image: `./imagesTr/${id}.nii.gz`, label: `./labelsTr/${id}.nii.gz` })),
    test: ids.test.map((id) => `./imagesTs/${id}.nii.gz`),
    // `context` only when set: standard phantoms' dataset.json stays byte-identical.
    phantom: { generator: PHANTOM_GENERATOR, version: PHANTOM_GENERATOR_VERSION, task, seed: opts.seed, siteStyle: opts.k, shape: opts.shape, ...(opts.context ? { context: true } : {}), ...(opts.annotatedLabels ? { annotatedLabels: opts.annotatedLabels } : {}) },
  };
}

async function isPhantomDataset(dir: string): Promise<boolean> {
  try {
    const json = JSON.parse(await readFile(path.join(dir, 'dataset.json'), 'utf8')) as { phantom?: { generator?: unknown } };
    return json?.phantom?.generator === PHANTOM_GENERATOR;
  } catch {
    return false;
  }
}

/** Make `dir` ready: create it, or clear an earlier phantom dataset when allowed; never touch anything else. */
async function prepareOutput(dir: string, overwrite: boolean): Promise<void> {
  let entries: string[] = [];
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) fail(`output ${dir} exists and is not a directory.`, dir);
    entries = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (entries.length > 0) {
    if (!overwrite) fail(`output folder ${dir} is not empty; choose an empty folder or pass overwrite (--overwrite) to replace an earlier phantom dataset.`, dir);
    if (!(await isPhantomDataset(dir))) {
      fail(`output folder ${dir} is not empty and does not hold a phantom dataset (no dataset.json written by ${PHANTOM_GENERATOR}); refusing to overwrite it.`, dir);
    }
    // dataset.json first: a half-cleared folder is never mistaken for a complete dataset.
    await rm(path.join(dir, 'dataset.json'), { force: true });
    for (const sub of ['imagesTr', 'labelsTr', 'imagesTs']) await rm(path.join(dir, sub), { recursive: true, force: true });
  }
  for (const sub of ['imagesTr', 'labelsTr', 'imagesTs']) await mkdir(path.join(dir, sub), { recursive: true });
}

function plantMarker(c: PhantomCase, value: number): Omit<PlantedMarker, 'caseId' | 'file'> {
  const [X, Y, Z] = c.labelDims;
  const count = Math.min(MARKER_VOXELS, X);
  // A run along x through the volume centre: contiguous bytes in the file, inside the body.
  const firstVoxel = Math.floor(Z / 2) * X * Y + Math.floor(Y / 2) * X + Math.floor((X - count) / 2);
  c.image.fill(value, firstVoxel, firstVoxel + count);
  const run = c.image.subarray(firstVoxel, firstVoxel + count);
  return { value, channel: 0, firstVoxel, count, bytes: Buffer.from(run.buffer, run.byteOffset, run.byteLength) };
}

/**
 * Write a complete phantom dataset. Deterministic: the same options give byte-identical files
 * (no timestamps anywhere; each case has its own seeded streams). dataset.json is written last,
 * so a folder with a dataset.json always holds every file it lists.
 */
export async function generatePhantomDataset(opts: PhantomDatasetOptions): Promise<PhantomDatasetResult> {
  const task = checkTask(opts.task);
  const shape = checkShape(opts.shape, task === 'brain' ? BRAIN_CHANNELS : 1);
  const cases = checkInteger('cases', opts.cases, 1, PHANTOM_MAX_CASES);
  const testCases = checkInteger('testCases', opts.testCases ?? Math.round(cases * 0.2), 0, PHANTOM_MAX_CASES);
  const seed = checkInteger('seed', opts.seed, 0, 2 ** 32 - 1);
  const k = checkInteger('siteStyle', opts.siteStyle, 0, Number.MAX_SAFE_INTEGER);
  const context = checkContext(opts.context);
  const marker = opts.marker === undefined ? undefined : storedMarker(task, opts.marker);
  const resolved = opts.annotatedLabels ? phantomAnnotation(task, opts.annotatedLabels) : null;
  const annotation = resolved && !isFullAnnotation(resolved) ? resolved : null;
  if (typeof opts.out !== 'string' || opts.out.trim() === '') fail('out must name an output folder.', 'out');
  const dir = path.resolve(opts.out);
  await prepareOutput(dir, opts.overwrite ?? false);

  const style = siteStyle(k);
  const ids = phantomCaseIds(task, k, cases, testCases);
  const all = [...ids.training, ...ids.test];
  const facts: Record<string, CaseFacts> = {};
  let planted: PlantedMarker | undefined;
  // Generation is synchronous CPU work while gzip runs on libuv's thread pool: generate case
  // i+1 while case i is being compressed, but never hold more than two cases in memory.
  let pending: Promise<unknown> | undefined;
  let written = 0;
  for (let i = 0; i < all.length; i++) {
    const id = all[i]!;
    const isTraining = i < cases;
    const key = { task, seed, style, caseIndex: i, context };
    const c = task === 'brain' ? generateBrainCase(key, shape) : generateLiverCase(key, shape);
    facts[id] = c.facts;
    const imageFile = path.join(dir, isTraining ? 'imagesTr' : 'imagesTs', `${id}.nii.gz`);
    if (i === 0 && marker !== undefined) planted = { caseId: id, file: imageFile, ...plantMarker(c, marker) };
    const writes = [writeNifti(imageFile, { data: c.image, dims: c.imageDims, datatype: c.imageDatatype }, c.geometry)];
    if (isTraining) {
      writes.push(writeNifti(path.join(dir, 'labelsTr', `${id}.nii.gz`), { data: annotatedLabelMap(c.label, annotation), dims: c.labelDims, datatype: 'uint8' }, c.geometry));
    }
    const current = Promise.all(writes);
    // Awaited below; the no-op catch only keeps a failure during the previous await from
    // counting as an unhandled rejection (which would kill the process).
    current.catch(() => undefined);
    if (pending) await pending;
    pending = current.then(() => opts.onCase?.(++written, all.length, id));
  }
  await pending;

  const jsonPath = path.join(dir, 'dataset.json');
  const temp = `${jsonPath}.tmp`;
  await writeFile(temp, JSON.stringify(datasetJson(task, { seed, k, shape, context, ...(annotation ? { annotatedLabels: opts.annotatedLabels } : {}) }, ids), null, 2) + '\n');
  await rename(temp, jsonPath);
  const styleSpacing = task === 'brain' ? style.mri.spacing : style.ct.spacing;
  const grid = context ? contextGrid(shape, styleSpacing) : { spacing: styleSpacing, stretch: 1 };
  return {
    dir,
    datasetJson: jsonPath,
    caseIds: ids.training,
    testCaseIds: ids.test,
    style,
    spacing: [...grid.spacing],
    stretch: grid.stretch,
    facts,
    ...(planted ? { marker: planted } : {}),
  };
}
