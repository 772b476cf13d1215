/**
 * Header-only validation of an MSD dataset: every listed file exists, is a readable NIfTI,
 * has as many channels as dataset.json lists modalities, and each label matches its image's
 * spatial shape. Reads headers only (a .nii.gz is decompressed just past its 348-byte header),
 * so scanning the whole of MSD Liver is cheap. Bad cases are reported, not fatal.
 */
import { stat } from 'node:fs/promises';
import { isPatchFedError } from '../../shared/errors.ts';
import type { DatatypeName } from '../../shared/volume.ts';
import { readNiftiHeader, type NiftiHeader, type NiftiReadOptions } from '../../shared/nifti/index.ts';
import { readDatasetManifest, type DatasetManifest, type DatasetProblem, type ListedTestImage, type ListedTrainingCase } from './manifest.ts';
import { caseOverBudget, readOptionsFor } from './memory-budget.ts';
import { imageLayout } from './preprocess.ts';

/** A training case whose headers passed validation. */
export interface MsdCaseInfo {
  id: string;
  imagePath: string;
  labelPath: string;
  /** Spatial shape [X, Y, Z] from the header. */
  shape: [number, number, number];
  channels: number;
  /** Voxel spacing (mm) of the image. */
  spacing: [number, number, number];
  imageDatatype: DatatypeName;
  labelDatatype: DatatypeName;
}

/** An unlabelled image from the `test` list whose header passed validation. */
export interface MsdTestImageInfo {
  id: string;
  imagePath: string;
  shape: [number, number, number];
  channels: number;
  spacing: [number, number, number];
  imageDatatype: DatatypeName;
}

export interface MsdScan extends DatasetManifest {
  cases: MsdCaseInfo[];
  testImages: MsdTestImageInfo[];
}

export interface ScanOptions {
  /** Refuse volumes promising more voxels than this (all channels); passed to the NIfTI reader. */
  maxVoxels?: number;
  /** Memory budget (MB): cases whose decoding would need more are refused from their headers. */
  maxMemoryMB?: number;
  /** Header reads in flight at once (keeps file descriptors bounded on big datasets). */
  concurrency?: number;
}

type HeaderResult = { ok: true; header: NiftiHeader } | { ok: false; reason: string };

async function headerOf(file: string, read: NiftiReadOptions): Promise<HeaderResult> {
  try {
    const s = await stat(file);
    if (!s.isFile()) return { ok: false, reason: 'is not a regular file' };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'file not found' : `cannot be read (${code ?? String(e)})` };
  }
  try {
    return { ok: true, header: await readNiftiHeader(file, read) };
  } catch (e) {
    if (isPatchFedError(e)) return { ok: false, reason: stripFilePrefix(e.message, file) };
    throw e;
  }
}

/** Reader messages usually start with the path; the problem already carries it. */
function stripFilePrefix(message: string, file: string): string {
  return message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message;
}

function checkImage(header: NiftiHeader, file: string, modalities: readonly string[]): { shape: [number, number, number]; channels: number } | string {
  let layout;
  try {
    layout = imageLayout(header.dims, file);
  } catch (e) {
    if (isPatchFedError(e)) return stripFilePrefix(e.message, file);
    throw e;
  }
  if (layout.channels !== modalities.length) {
    return `image has ${layout.channels} channel(s) (dims ${header.dims.join('x')}) but dataset.json lists ${modalities.length} modalit${modalities.length === 1 ? 'y' : 'ies'} (${modalities.join(', ')})`;
  }
  return layout;
}

async function scanTrainingCase(entry: ListedTrainingCase, modalities: readonly string[], read: NiftiReadOptions): Promise<MsdCaseInfo | DatasetProblem> {
  const [img, lab] = await Promise.all([headerOf(entry.imagePath, read), headerOf(entry.labelPath, read)]);
  if (!img.ok) return { caseId: entry.id, file: entry.imagePath, reason: img.reason };
  if (!lab.ok) return { caseId: entry.id, file: entry.labelPath, reason: lab.reason };
  const image = checkImage(img.header, entry.imagePath, modalities);
  if (typeof image === 'string') return { caseId: entry.id, file: entry.imagePath, reason: image };
  let label;
  try {
    label = imageLayout(lab.header.dims, entry.labelPath);
  } catch (e) {
    if (isPatchFedError(e)) return { caseId: entry.id, file: entry.labelPath, reason: stripFilePrefix(e.message, entry.labelPath) };
    throw e;
  }
  if (label.channels !== 1) {
    return { caseId: entry.id, file: entry.labelPath, reason: `label has ${label.channels} channels (dims ${lab.header.dims.join('x')}); a label map must be 3-D` };
  }
  if (label.shape.some((v, i) => v !== image.shape[i])) {
    return { caseId: entry.id, file: entry.labelPath, reason: `label shape ${label.shape.join('x')} does not match image shape ${image.shape.join('x')} (${entry.imagePath})` };
  }
  const overBudget = caseOverBudget(image.shape, image.channels, read);
  if (overBudget !== null) return { caseId: entry.id, file: entry.imagePath, reason: overBudget };
  return {
    id: entry.id,
    imagePath: entry.imagePath,
    labelPath: entry.labelPath,
    shape: image.shape,
    channels: image.channels,
    spacing: [...img.header.geometry.spacing],
    imageDatatype: img.header.datatype,
    labelDatatype: lab.header.datatype,
  };
}

async function scanTestImage(entry: ListedTestImage, modalities: readonly string[], read: NiftiReadOptions): Promise<MsdTestImageInfo | DatasetProblem> {
  const img = await headerOf(entry.imagePath, read);
  if (!img.ok) return { caseId: entry.id, file: entry.imagePath, reason: img.reason };
  const image = checkImage(img.header, entry.imagePath, modalities);
  if (typeof image === 'string') return { caseId: entry.id, file: entry.imagePath, reason: image };
  return {
    id: entry.id,
    imagePath: entry.imagePath,
    shape: image.shape,
    channels: image.channels,
    spacing: [...img.header.geometry.spacing],
    imageDatatype: img.header.datatype,
  };
}

/** Map with at most `limit` calls in flight; results keep input order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  // One iterator shared by all workers: each takes the next unclaimed item.
  const queue = items.entries();
  const worker = async () => {
    for (const [i, item] of queue) out[i] = await fn(item);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

function isProblem(r: object): r is DatasetProblem {
  return 'reason' in r;
}

/**
 * Read dataset.json and every listed file's header. Throws PatchFedError only when dataset.json
 * itself is missing or invalid; per-case trouble lands in `problems` (the case is left out).
 */
export async function scanMsdDataset(dir: string, opts: ScanOptions = {}): Promise<MsdScan> {
  const manifest = await readDatasetManifest(dir);
  const limit = opts.concurrency ?? 8;
  const problems = [...manifest.problems];
  const read = readOptionsFor(opts.maxVoxels, opts.maxMemoryMB);
  const cases: MsdCaseInfo[] = [];
  for (const r of await mapLimited(manifest.training, limit, (e) => scanTrainingCase(e, manifest.modalities, read))) {
    if (isProblem(r)) problems.push(r);
    else cases.push(r);
  }
  const testImages: MsdTestImageInfo[] = [];
  for (const r of await mapLimited(manifest.test, limit, (e) => scanTestImage(e, manifest.modalities, read))) {
    if (isProblem(r)) problems.push(r);
    else testImages.push(r);
  }
  return { ...manifest, cases, testImages, problems };
}
