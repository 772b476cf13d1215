/**
 * Training patch sampling, seeded and deterministic: random patch origins anywhere in a case (not
 * only on the tiling grid), with nnU-Net-style foreground oversampling and the thesis's option to
 * skip all-background patches (§4.2), plus batch assembly into NDHWC arrays.
 *
 * The thesis's own `patch` training visits every grid patch and skips the empty ones; do that with
 * `gridPatches` + `patchHasForeground` from patches.ts.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { mulberry32 } from '../../shared/random.ts';
import { allocFloat32, allocUint8, assertPositiveInt, assertShape3, checkCase, formatShape, voxelCount, AXES3, type CaseVolume, type Origin3, type Shape3 } from './case.ts';
import { extractPatchInto, patchHasForeground } from './patches.ts';
import { labelsToOneHot } from './tensors.ts';

/** The project's PRNG (shared/random.ts) over an integer seed; floats in [0, 1). */
export function createRng(seed: number): () => number {
  if (!Number.isInteger(seed)) throw new PatchFedError('pipeline-seed', `sampler seed must be an integer; got ${seed}`);
  return mulberry32(seed);
}

/** Uniform integer in [0, n). */
export function randomInt(rng: () => number, n: number): number {
  return Math.floor(rng() * n);
}

export interface SamplerOptions {
  seed: number;
  /**
   * Fraction of patches forced to contain a foreground voxel (nnU-Net: 0.33): pick a foreground class
   * present in the case uniformly, one of its voxels uniformly, and place the patch so it contains
   * that voxel at a uniformly random position. Sample i (counted over the sampler's life) is forced
   * iff floor((i+1)·rate) > floor(i·rate), so exactly floor(n·rate) of the first n are — also with
   * batch size 1, where nnU-Net's per-batch rounding would force none. Default 0.
   */
  foregroundRate?: number;
  /**
   * Reject random patches without foreground (thesis §4.2) and draw again; after `maxTries` draws a
   * forced-foreground patch is used instead. A case without any foreground cannot satisfy this and
   * throws — check `hasForeground` first. Default false.
   */
  skipEmpty?: boolean;
  /** Random draws per sample before falling back to a forced-foreground patch. Default 50. */
  maxTries?: number;
  /** Voxel positions remembered per class (reservoir sample, as nnU-Net's 10 000). Default 10 000. */
  maxLocationsPerClass?: number;
}

/** Draws patch origins from one case. Origins lie in [0, max(0, dim − p)] per axis, so patches stay
 * inside the volume whenever it is at least as large as the patch (otherwise they are zero-padded). */
export class PatchSampler {
  readonly foregroundClasses: number[];
  private readonly locations: Float64Array[];
  private readonly rng: () => number;
  private readonly rate: number;
  private readonly skipEmpty: boolean;
  private readonly maxTries: number;
  private drawn = 0;
  /** How many samples were forced to contain foreground (for logs). */
  forcedCount = 0;

  constructor(
    private readonly c: CaseVolume,
    readonly patch: Shape3,
    opts: SamplerOptions,
  ) {
    checkCase(c, { needLabel: true });
    assertShape3(patch, 'patch shape', c.id);
    this.rate = opts.foregroundRate ?? 0;
    if (!(this.rate >= 0 && this.rate <= 1)) {
      throw new PatchFedError('pipeline-sampler', `foregroundRate must be in [0, 1]; got ${opts.foregroundRate}`, { subject: c.id });
    }
    this.skipEmpty = opts.skipEmpty ?? false;
    this.maxTries = opts.maxTries ?? 50;
    assertPositiveInt(this.maxTries, 'maxTries', c.id);
    const cap = opts.maxLocationsPerClass ?? 10_000;
    assertPositiveInt(cap, 'maxLocationsPerClass', c.id);
    this.rng = createRng(opts.seed);
    const found = collectClassLocations(c.label!, cap, this.rng);
    this.foregroundClasses = [...found.keys()].sort((a, b) => a - b);
    this.locations = this.foregroundClasses.map((k) => found.get(k)!);
  }

  get hasForeground(): boolean {
    return this.foregroundClasses.length > 0;
  }

  /** Next `count` origins (see SamplerOptions for the rules). */
  sampleOrigins(count: number): Origin3[] {
    assertPositiveInt(count, 'patch count', this.c.id);
    if (this.skipEmpty && !this.hasForeground) {
      const name = this.c.id !== undefined ? `case ${this.c.id}` : 'case';
      throw new PatchFedError('pipeline-no-foreground', `${name} has no foreground voxels, so skipEmpty leaves no patch to sample`, { subject: this.c.id });
    }
    const out: Origin3[] = [];
    for (let n = 0; n < count; n++) {
      const i = this.drawn++;
      const forced = Math.floor((i + 1) * this.rate) > Math.floor(i * this.rate);
      out.push(forced && this.hasForeground ? this.forcedOrigin() : this.randomOrigin());
    }
    return out;
  }

  private randomOrigin(): Origin3 {
    const label = this.c.label!;
    for (let t = 0; t < this.maxTries; t++) {
      const o: Origin3 = AXES3.map((a) => randomInt(this.rng, Math.max(0, this.c.shape[a] - this.patch[a]) + 1)) as unknown as Origin3;
      if (!this.skipEmpty || patchHasForeground(label, this.c.shape, o, this.patch)) return o;
    }
    return this.forcedOrigin();
  }

  private forcedOrigin(): Origin3 {
    this.forcedCount++;
    // randomInt(n) is in [0, n), so both picks are in range (`locations` only holds non-empty lists).
    const cls = randomInt(this.rng, this.locations.length);
    const locs = this.locations[cls]!;
    const v = locs[randomInt(this.rng, locs.length)]!;
    const [, Y, Z] = this.c.shape;
    const pos: Origin3 = [Math.floor(v / (Y * Z)), Math.floor(v / Z) % Y, v % Z];
    return AXES3.map((a) => {
      const p = pos[a];
      const hi = Math.max(0, this.c.shape[a] - this.patch[a]);
      const o = p - randomInt(this.rng, this.patch[a]);
      return Math.min(Math.max(o, 0), hi);
    }) as unknown as Origin3;
  }
}

/** Per foreground class present: up to `cap` voxel indices, a uniform reservoir sample. */
export function collectClassLocations(label: Uint8Array, cap: number, rng: () => number): Map<number, Float64Array> {
  const seen = new Map<number, number>();
  const res = new Map<number, Float64Array>();
  for (let i = 0; i < label.length; i++) {
    const k = label[i]!; // per-voxel loop, i < label.length: no runtime check
    if (k === 0) continue;
    const n = seen.get(k) ?? 0;
    seen.set(k, n + 1);
    let r = res.get(k);
    if (r === undefined) {
      r = new Float64Array(cap);
      res.set(k, r);
    }
    if (n < cap) r[n] = i;
    else {
      const j = randomInt(rng, n + 1);
      if (j < cap) r[j] = i;
    }
  }
  for (const [k, r] of res) res.set(k, r.subarray(0, Math.min(cap, seen.get(k)!)));
  return res;
}

export interface BatchItem {
  case: CaseVolume;
  origin: Origin3;
}

/** A training batch as typed arrays, ready for `tf.tensor5d(data, shape)`. */
export interface TrainingBatch {
  /** (n, px, py, pz, C) channels-last. */
  image: Float32Array;
  imageShape: [number, number, number, number, number];
  /** (n, px, py, pz) class indices. */
  labels: Uint8Array;
  /** (n, px, py, pz, K) one-hot of `labels`. */
  oneHot: Float32Array;
  oneHotShape: [number, number, number, number, number];
}

/** Extracts every item's patch (zero padding outside its volume) into one NDHWC batch + one-hot labels. */
export function assembleBatch(items: readonly BatchItem[], patch: Shape3, numClasses: number): TrainingBatch {
  assertShape3(patch, 'patch shape');
  assertPositiveInt(numClasses, 'number of classes');
  const firstItem = items[0];
  if (!firstItem) throw new PatchFedError('pipeline-shape', 'a training batch needs at least one patch');
  const C = firstItem.case.channels;
  for (const it of items) {
    checkCase(it.case, { needLabel: true });
    if (it.case.channels !== C) {
      throw new PatchFedError('pipeline-shape', `batch mixes ${C}- and ${it.case.channels}-channel cases (case ${it.case.id ?? '?'})`, { subject: it.case.id });
    }
  }
  const n = items.length;
  const pv = voxelCount(patch);
  const image = allocFloat32(n * pv * C, `batch ${n}x${formatShape(patch)}x${C}`);
  const labels = allocUint8(n * pv, `batch ${n}x${formatShape(patch)} labels`);
  items.forEach((it, b) => extractPatchInto(it.case, it.origin, patch, image, b * pv * C, labels, b * pv));
  return {
    image,
    imageShape: [n, patch[0], patch[1], patch[2], C],
    labels,
    oneHot: labelsToOneHot(labels, numClasses),
    oneHotShape: [n, patch[0], patch[1], patch[2], numClasses],
  };
}
