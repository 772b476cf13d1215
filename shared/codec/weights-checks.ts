/**
 * The one validation path for weights that came from a peer (a site's update before it is
 * aggregated, a checkpoint before a site loads it): a list of checks, in the spirit of NVFlare's
 * filters, run over the manifest once and over every value run once — while the bytes stream in
 * (WeightsStreamParser), or over arrays already in memory. Each check throws a PatchFedError that
 * names the payload and the first thing wrong.
 *
 *   manifestCheck   — exactly the expected tensors: names, shapes, roles, order (parsing does this
 *                     when given `expectedManifest`; the check exists for in-memory weights)
 *   finiteCheck     — no NaN or ±Inf anywhere
 *   normBoundCheck  — ||update − reference||₂ within a bound (only built when a bound is set, so no
 *                     norm pass runs otherwise)
 *
 * Adding a check (say, a per-tensor magnitude cap) means writing one more WeightsCheck; the
 * receiver and every caller pick it up through `updateChecks`.
 */
import { PatchFedError } from '../errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../weights.ts';
import { checkManifestMatches } from './manifest.ts';
import type { GlobalValues } from './weights-file.ts';
import { WeightsStreamParser, type WeightsStreamOptions } from './weights-stream.ts';

export interface WeightsCheck {
  readonly name: string;
  manifest?(manifest: readonly WeightSpec[]): void;
  values?(tensor: number, offset: number, run: Float32Array): void;
  /** After the last value. */
  end?(): void;
}

/** First non-finite element of `values`, or -1. */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i] ?? 0;
    if (v - v !== 0) return i; // NaN − NaN and ±Inf − ±Inf are NaN
  }
  return -1;
}

export function manifestCheck(expected: readonly WeightSpec[], source: string): WeightsCheck {
  return { name: 'manifest', manifest: (m) => checkManifestMatches(expected, m, source) };
}

export function finiteCheck(source: string): WeightsCheck {
  let specs: readonly WeightSpec[] = [];
  return {
    name: 'finite',
    manifest: (m) => {
      specs = m;
    },
    values: (tensor, offset, run) => {
      const bad = firstNonFinite(run);
      if (bad < 0) return;
      const name = specs[tensor]?.name ?? `#${tensor}`;
      throw new PatchFedError('weights-not-finite', `${source}: tensor '${name}' has a non-finite value (${run[bad]}) at element ${offset + bad}.`, { subject: name });
    },
  };
}

/**
 * L2 norm of (weights − reference) over all tensors, in float64, refused above `bound`. The
 * reference is the round's global model: sites send full weights, the update is the difference.
 * It also refuses non-finite values in the same loop (the reference is finite, so the difference
 * is non-finite exactly when the value is): with a bound, the values are read once, not twice.
 */
export function normBoundCheck(reference: GlobalValues, bound: number, source: string): WeightsCheck {
  if (!(bound > 0 && Number.isFinite(bound))) throw new PatchFedError('bad-norm-bound', `update norm bound must be a positive number, got ${bound}.`);
  let sumSquares = 0;
  let specs: readonly WeightSpec[] = [];
  return {
    name: 'finite-and-norm-bound',
    manifest: (m) => {
      specs = m;
    },
    values: (tensor, offset, run) => {
      const ref = reference.read(tensor, offset, run.length);
      let sq = 0;
      for (let i = 0; i < run.length; i++) {
        const d = (run[i] ?? 0) - (ref[i] ?? 0);
        sq += d * d;
      }
      if (sq - sq !== 0) {
        const bad = firstNonFinite(run);
        const name = specs[tensor]?.name ?? `#${tensor}`;
        throw new PatchFedError('weights-not-finite', `${source}: tensor '${name}' has a non-finite value (${run[bad]}) at element ${offset + bad}.`, { subject: name });
      }
      sumSquares += sq;
    },
    end: () => {
      const norm = Math.sqrt(sumSquares);
      if (!(norm <= bound)) {
        throw new PatchFedError('update-norm-exceeded', `${source}: update L2 norm ${norm.toPrecision(6)} exceeds the bound ${bound}.`, { subject: source });
      }
    },
  };
}

export interface UpdateCheckOptions {
  /** The manifest every value must follow (the round's global model). */
  expectedManifest: readonly WeightSpec[];
  /** With a bound: the global model the update's distance is measured from. */
  reference?: GlobalValues;
  /** Absolute L2 bound on (update − reference); 0 or absent = none. */
  normBound?: number;
  /**
   * Relative bound: ||update − reference|| ≤ maxNormRatio · referenceNorm (a local training round
   * moves a model by a fraction of its norm; an update many times larger is a diverged or
   * malicious one). 0 or absent = none.
   */
  maxNormRatio?: number;
  referenceNorm?: number;
  source: string;
}

/** The checks every update from a site passes before it may be aggregated. */
export function updateChecks(o: UpdateCheckOptions): WeightsCheck[] {
  const bounds: number[] = [];
  if (o.normBound !== undefined && o.normBound > 0) bounds.push(o.normBound);
  if (o.maxNormRatio !== undefined && o.maxNormRatio > 0 && o.referenceNorm !== undefined && o.referenceNorm > 0) bounds.push(o.maxNormRatio * o.referenceNorm);
  if (bounds.length === 0) return [manifestCheck(o.expectedManifest, o.source), finiteCheck(o.source)];
  if (!o.reference) throw new PatchFedError('bad-norm-bound', `${o.source}: a norm bound needs the reference model.`);
  // The bound's loop also refuses non-finite values: one pass over the values either way.
  return [manifestCheck(o.expectedManifest, o.source), normBoundCheck(o.reference, Math.min(...bounds), o.source)];
}

/** Runs checks as a payload streams in: push() each plaintext chunk, then end(). */
export class StreamingInspection {
  private readonly parser: WeightsStreamParser;

  constructor(
    private readonly checks: readonly WeightsCheck[],
    options: WeightsStreamOptions,
  ) {
    this.parser = new WeightsStreamParser(
      {
        manifest: (m) => {
          for (const c of checks) c.manifest?.(m);
        },
        values: (t, o, run) => {
          for (const c of checks) c.values?.(t, o, run);
        },
      },
      options,
    );
  }

  get manifest(): readonly WeightSpec[] {
    return this.parser.manifest;
  }

  /** Exact payload size once the manifest was read; -1 before. */
  get totalBytes(): number {
    return this.parser.totalBytes;
  }

  push(chunk: Uint8Array): void {
    this.parser.push(chunk);
  }

  end(): void {
    this.parser.finish();
    for (const c of this.checks) c.end?.();
  }
}

/** Runs checks over weights already in memory (one pass over the values). */
export function inspectWeights(weights: NamedWeights, checks: readonly WeightsCheck[], source: string): void {
  const { manifest, values } = weights;
  if (!Array.isArray(manifest) || !Array.isArray(values) || manifest.length !== values.length) {
    throw new PatchFedError('weights-inconsistent', `${source}: manifest and values must be arrays of equal length.`, { subject: source });
  }
  for (const c of checks) c.manifest?.(manifest);
  manifest.forEach((spec, t) => {
    const v = values[t];
    if (!(v instanceof Float32Array) || v.length !== sizeOf(spec.shape)) {
      throw new PatchFedError('weights-inconsistent', `${source}: tensor '${spec.name}' needs ${sizeOf(spec.shape)} float32 values for shape [${spec.shape}], got ${v instanceof Float32Array ? v.length : typeof v}.`, { subject: spec.name });
    }
    for (const c of checks) c.values?.(t, 0, v);
  });
  for (const c of checks) c.end?.();
}
