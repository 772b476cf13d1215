/**
 * Sliding-window inference in the style of MONAI `sliding_window_inference` / nnU-Net:
 * overlapping windows of the patch shape, each window's probabilities weighted by an importance
 * map (Gaussian or constant), summed, and divided by the summed weights.
 *
 * Window placement per axis: step = max(1, round(p·(1 − overlap))), starts 0, step, 2·step, … and the
 * last window flush with the volume end (start = dim − p). MONAI truncates p·(1 − overlap) instead of
 * rounding; nnU-Net spreads the steps evenly. An axis shorter than the patch gets one window at 0,
 * zero-padded past the end (MONAI pads symmetrically; the padding is cropped either way).
 *
 * `gridInference` runs the thesis's non-overlapping patch-wise prediction through the same predictor
 * interface, so `full` (one padded window), `patch` and cascade stage 2 share one code path.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import * as tf from '@tensorflow/tfjs-core';
import { PatchFedError } from '../../shared/errors.ts';
import { allocFloat32, assertPositiveInt, assertShape3, checkCase, formatShape, voxelCount, AXES3, type CaseVolume, type Origin3, type Shape3 } from './case.ts';
import { extractPatchInto, gridPatches } from './patches.ts';

export type Weighting = 'gaussian' | 'constant';

/** Window step along an axis (see module comment). */
export function windowStep(p: number, overlap: number): number {
  return Math.max(1, Math.round(p * (1 - overlap)));
}

/** Window starts along one axis: 0, step, … and the last at dim − p (or just 0 if dim ≤ p). */
export function windowStarts(dim: number, p: number, overlap: number): number[] {
  if (dim <= p) return [0];
  const step = windowStep(p, overlap);
  const starts: number[] = [];
  for (let s = 0; s + p < dim; s += step) starts.push(s);
  starts.push(dim - p);
  return starts;
}

function assertOverlap(overlap: number): void {
  if (!(overlap >= 0 && overlap < 1)) throw new PatchFedError('pipeline-overlap', `sliding-window overlap must be in [0, 1); got ${overlap}`);
}

/** All window origins, x slowest, z fastest. */
export function slidingWindowOrigins(shape: Shape3, patch: Shape3, overlap: number): Origin3[] {
  assertShape3(shape, 'volume shape');
  assertShape3(patch, 'patch shape');
  assertOverlap(overlap);
  const out: Origin3[] = [];
  for (const x of windowStarts(shape[0], patch[0], overlap)) {
    for (const y of windowStarts(shape[1], patch[1], overlap)) {
      for (const z of windowStarts(shape[2], patch[2], overlap)) out.push([x, y, z]);
    }
  }
  return out;
}

export interface ImportanceMapOptions {
  /** Gaussian sigma per axis = patch·sigmaScale (MONAI and nnU-Net use 0.125). */
  sigmaScale?: number;
  /** Weights below this are raised to it so border voxels still count (MONAI: 1e-3). */
  minWeight?: number;
}

/**
 * Per-voxel window weight (px, py, pz). Gaussian: the product over axes of
 * exp(−(i − (p−1)/2)² / (2σ²)), σ = p·sigmaScale, peak 1 at the centre (as MONAI
 * `compute_importance_map`), clamped below at minWeight. Constant: all ones.
 */
export function importanceMap(patch: Shape3, weighting: Weighting, opts: ImportanceMapOptions = {}): Float32Array {
  assertShape3(patch, 'patch shape');
  const out = allocFloat32(voxelCount(patch), `importance map ${formatShape(patch)}`);
  if (weighting === 'constant') return out.fill(1);
  const sigmaScale = opts.sigmaScale ?? 0.125;
  const minWeight = opts.minWeight ?? 1e-3;
  if (!(sigmaScale > 0)) throw new PatchFedError('pipeline-weighting', `Gaussian sigmaScale must be > 0; got ${sigmaScale}`);
  // Math.fround: a weight that underflows float32 would be 0 and leave voxels with no weight at all.
  if (!(Math.fround(minWeight) > 0 && minWeight <= 1)) throw new PatchFedError('pipeline-weighting', `minWeight must be in (0, 1] and representable as float32; got ${minWeight}`);
  const axis = patch.map((p) => {
    const sigma = p * sigmaScale;
    const g = new Float64Array(p);
    for (let i = 0; i < p; i++) {
      const d = i - (p - 1) / 2;
      g[i] = Math.exp(-(d * d) / (2 * sigma * sigma));
    }
    return g;
  });
  const [px, py, pz] = patch;
  for (let x = 0, i = 0; x < px; x++) {
    for (let y = 0; y < py; y++) {
      const gxy = axis[0]![x]! * axis[1]![y]!;
      for (let z = 0; z < pz; z++, i++) out[i] = Math.max(minWeight, gxy * axis[2]![z]!);
    }
  }
  return out;
}

/** A batch of windows handed to the predictor: NDHWC data plus where each window sits. */
export interface PatchBatch {
  /** (n, px, py, pz, C) channels-last. */
  data: Float32Array;
  shape: [number, number, number, number, number];
  origins: Origin3[];
}

/**
 * Returns softmax probabilities (n, px, py, pz, K) channels-last, as a typed array or a tensor
 * (which slidingWindowInference reads and disposes). May be async.
 */
export type PatchPredictor = (batch: PatchBatch) => Float32Array | tf.Tensor | Promise<Float32Array | tf.Tensor>;

/** Adapts a tensor model `(x: [n,px,py,pz,C]) → [n,px,py,pz,K]` to a PatchPredictor; the input tensor is freed. */
export function tensorPredictor(model: (x: tf.Tensor5D) => tf.Tensor): PatchPredictor {
  return (batch) => tf.tidy(() => model(tf.tensor5d(batch.data, batch.shape, 'float32')));
}

export interface SlidingWindowOptions {
  patch: Shape3;
  numClasses: number;
  /** Fraction of the patch that neighbouring windows share, [0, 1); default 0.5 (nnU-Net). */
  overlap?: number;
  /** Default 'gaussian'. */
  weighting?: Weighting;
  sigmaScale?: number;
  minWeight?: number;
  /** Windows per predictor call; default 1. */
  batchSize?: number;
}

/** What an inference run did, for logs and reports. */
export interface PatchInferenceMethod {
  /** 'sliding-window': overlapping, last window flush with the end; 'grid': thesis tiling, last patch padded. */
  placement: 'sliding-window' | 'grid';
  weighting: Weighting;
  overlap: number;
  /** Window step per axis (0 = a single window on that axis). */
  steps: [number, number, number];
  windows: number;
  predictorCalls: number;
  sigmaScale?: number;
  minWeight?: number;
  description: string;
}
export type SlidingWindowMethod = PatchInferenceMethod;

export interface SlidingWindowResult {
  /** (X, Y, Z, K) channels-last: weighted mean of the window probabilities. */
  probabilities: Float32Array;
  method: PatchInferenceMethod;
}

async function readPrediction(out: Float32Array | tf.Tensor, expected: number, window: string): Promise<Float32Array> {
  let data: Float32Array;
  if (out instanceof tf.Tensor) {
    try {
      const raw = await out.data();
      data = raw instanceof Float32Array ? raw : Float32Array.from(raw as ArrayLike<number>);
    } finally {
      out.dispose();
    }
  } else {
    data = out;
  }
  if (data.length !== expected) {
    throw new PatchFedError('pipeline-predictor', `predictor returned ${data.length} values for ${window}; expected ${expected}`);
  }
  return data;
}

/**
 * Feeds the windows at `origins` to the predictor in batches of `batchSize` and hands each window's
 * output (n·px·py·pz·K values, window b at offset b·px·py·pz·K) to `visit`. Returns the call count.
 */
async function predictWindows(
  c: CaseVolume,
  origins: readonly Origin3[],
  patch: Shape3,
  numClasses: number,
  batchSize: number,
  predictor: PatchPredictor,
  visit: (out: Float32Array, b: number, origin: Origin3) => void,
): Promise<number> {
  const [px, py, pz] = patch;
  const pv = px * py * pz;
  const C = c.channels;
  const batchData = allocFloat32(Math.min(batchSize, origins.length) * pv * C, 'inference window batch', c.id);
  let calls = 0;
  for (let start = 0; start < origins.length; start += batchSize) {
    const batchOrigins = origins.slice(start, start + batchSize);
    const n = batchOrigins.length;
    const data = n * pv * C === batchData.length ? batchData : batchData.subarray(0, n * pv * C);
    batchOrigins.forEach((o, b) => extractPatchInto(c, o, patch, data, b * pv * C));
    const out = await readPrediction(
      await predictor({ data, shape: [n, px, py, pz, C], origins: batchOrigins }),
      n * pv * numClasses,
      `windows ${start}..${start + n - 1}`,
    );
    calls++;
    batchOrigins.forEach((o, b) => visit(out, b, o));
  }
  return calls;
}

function checkInferenceArgs(c: CaseVolume, patch: Shape3, numClasses: number, batchSize: number): void {
  checkCase(c);
  assertShape3(patch, 'patch shape', c.id);
  assertPositiveInt(numClasses, 'number of classes', c.id);
  assertPositiveInt(batchSize, 'inference batch size', c.id);
}

/**
 * Predicts a whole case with overlapping windows. Only `image`, `shape` and `channels` of the case
 * are used. Memory: (K + 1)·X·Y·Z floats for the accumulators plus one window batch.
 */
export async function slidingWindowInference(
  c: CaseVolume,
  predictor: PatchPredictor,
  opts: SlidingWindowOptions,
): Promise<SlidingWindowResult> {
  const { patch, numClasses: K } = opts;
  const batchSize = opts.batchSize ?? 1;
  checkInferenceArgs(c, patch, K, batchSize);
  const overlap = opts.overlap ?? 0.5;
  assertOverlap(overlap);
  const weighting = opts.weighting ?? 'gaussian';

  const [X, Y, Z] = c.shape;
  const [px, py, pz] = patch;
  const pv = px * py * pz;
  const origins = slidingWindowOrigins(c.shape, patch, overlap);
  const weights = importanceMap(patch, weighting, { sigmaScale: opts.sigmaScale, minWeight: opts.minWeight });
  const acc = allocFloat32(voxelCount(c.shape) * K, `sliding-window ${formatShape(c.shape)}x${K} probabilities`, c.id);
  const wsum = allocFloat32(voxelCount(c.shape), `sliding-window ${formatShape(c.shape)} weight sum`, c.id);

  const calls = await predictWindows(c, origins, patch, K, batchSize, predictor, (out, b, [ox, oy, oz]) => {
    const x1 = Math.min(px, X - ox);
    const y1 = Math.min(py, Y - oy);
    const z1 = Math.min(pz, Z - oz);
    for (let lx = 0; lx < x1; lx++) {
      for (let ly = 0; ly < y1; ly++) {
        const lRow = (lx * py + ly) * pz;
        const gRow = ((ox + lx) * Y + oy + ly) * Z + oz;
        for (let lz = 0; lz < z1; lz++) {
          const w = weights[lRow + lz]!;
          const g = gRow + lz;
          wsum[g]! += w;
          const s = (b * pv + lRow + lz) * K;
          const d = g * K;
          for (let k = 0; k < K; k++) acc[d + k]! += w * out[s + k]!;
        }
      }
    }
  });
  for (let g = 0; g < wsum.length; g++) {
    const inv = 1 / wsum[g]!;
    for (let k = 0, d = g * K; k < K; k++) acc[d + k]! *= inv;
  }

  const steps = AXES3.map((a) => (c.shape[a] <= patch[a] ? 0 : windowStep(patch[a], overlap))) as [number, number, number];
  const method: PatchInferenceMethod = {
    placement: 'sliding-window',
    weighting,
    overlap,
    steps,
    windows: origins.length,
    predictorCalls: calls,
    ...(weighting === 'gaussian' ? { sigmaScale: opts.sigmaScale ?? 0.125, minWeight: opts.minWeight ?? 1e-3 } : {}),
    description:
      `sliding window ${formatShape(patch)} over ${formatShape(c.shape)}, overlap ${overlap}, step ${steps.join('x')} (0 = single window), ` +
      `${origins.length} window(s), ` +
      (weighting === 'gaussian'
        ? `Gaussian weighting (sigma = ${opts.sigmaScale ?? 0.125}·patch, min weight ${opts.minWeight ?? 1e-3})`
        : 'constant weighting'),
  };
  return { probabilities: acc, method };
}

export interface GridInferenceOptions {
  patch: Shape3;
  numClasses: number;
  /** Patches per predictor call; default 1. */
  batchSize?: number;
}

/**
 * The thesis's patch-wise inference (§2.2.2): predict every patch of the non-overlapping grid
 * (`gridPatches`, last patch zero-padded) and write each output, cropped, into the volume — the
 * streaming form of extractPatch → model → reconstruct, holding one batch at a time.
 */
export async function gridInference(c: CaseVolume, predictor: PatchPredictor, opts: GridInferenceOptions): Promise<SlidingWindowResult> {
  const { patch, numClasses: K } = opts;
  const batchSize = opts.batchSize ?? 1;
  checkInferenceArgs(c, patch, K, batchSize);
  const [X, Y, Z] = c.shape;
  const [px, py, pz] = patch;
  const pv = px * py * pz;
  const origins = gridPatches(c.shape, patch);
  const probs = allocFloat32(voxelCount(c.shape) * K, `patch-wise ${formatShape(c.shape)}x${K} probabilities`, c.id);
  const calls = await predictWindows(c, origins, patch, K, batchSize, predictor, (out, b, [ox, oy, oz]) => {
    const x1 = Math.min(px, X - ox);
    const y1 = Math.min(py, Y - oy);
    const z1 = Math.min(pz, Z - oz);
    for (let lx = 0; lx < x1; lx++) {
      for (let ly = 0; ly < y1; ly++) {
        const s = (b * pv + (lx * py + ly) * pz) * K;
        const d = (((ox + lx) * Y + oy + ly) * Z + oz) * K;
        probs.set(out.subarray(s, s + z1 * K), d);
      }
    }
  });
  const steps = AXES3.map((a) => (c.shape[a] <= patch[a] ? 0 : patch[a])) as [number, number, number];
  return {
    probabilities: probs,
    method: {
      placement: 'grid',
      weighting: 'constant',
      overlap: 0,
      steps,
      windows: origins.length,
      predictorCalls: calls,
      description: `non-overlapping ${formatShape(patch)} patches over ${formatShape(c.shape)} (last patch per axis zero-padded), ${origins.length} patch(es)`,
    },
  };
}
