/**
 * Robust aggregation in the running federation (robust-math.ts has the rules and their sources):
 * coordinate-wise median, β-trimmed mean, and FedAvg of update deltas clipped to a multiple of
 * the round's median delta norm. All three need every update at once, so the aggregator keeps
 * each accepted update as a file (retained-updates.ts) and, at finish, reads the same slice of
 * the model from every file: memory is one output block plus sites × slice values, never
 * sites × model. They need the individual updates, so they exclude secure aggregation
 * (shared/config/strategy.ts strategyCombinationProblem).
 *
 * Median and trimmed mean are unweighted (one site, one vote: a lying sample count must not buy
 * influence); the clipped mean weights the clipped deltas by sample count, as FedAvg does.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { checkManifestMatches, type GlobalValues, type RunVisitor, type WeightRuns, type WeightsFile } from '../../shared/codec/index.ts';
import { sizeOf, type WeightSpec } from '../../shared/weights.ts';
import { RetainedUpdates } from './retained-updates.ts';
import { adaptiveClipBound, clipFactors, clippedMean, coordinateMedian, sliceLengthForBudget, sliceRanges, trimmedMean } from './robust-math.ts';
import { SampleWeightedStrategy, type SamplingPolicy } from './sample-weighted.ts';
import type { Aggregator, CheckpointAttachments, FitPlan, Rng, SiteInfo, Strategy, StrategyName } from './types.ts';

export type RobustRule = { kind: 'median' } | { kind: 'trimmed-mean'; beta: number } | { kind: 'clipped-mean'; multiplier: number };

/** Update values read at once across all sites at finish (each file's slice is this / sites). */
export const DEFAULT_SLICE_BUDGET_BYTES = 16 * 1024 * 1024;

export interface RobustOptions {
  /** Bytes of update values held at once during finish (default DEFAULT_SLICE_BUDGET_BYTES). */
  sliceBudgetBytes?: number;
  label?: string;
}

/** What finish() held and read, for memory checks (the reader's own scratch is max(slice, 64 Ki) values per file). */
export interface SliceStats {
  sites: number;
  /** Values per slice read from each update file. */
  sliceElements: number;
  /** sites × sliceElements × 4: update values held at once. */
  sliceBytes: number;
  /** Slices read from each file. */
  slicesPerSite: number;
  /** Values in the model. */
  modelElements: number;
  /** Length of the output block handed to the sink. */
  outputElements: number;
}

export class RobustAggregator implements Aggregator {
  private readonly manifest: WeightSpec[];
  private readonly retained: RetainedUpdates;
  private readonly norms = new Map<string, number>();
  private readonly pending = new Set<string>();
  private readonly label: string;
  private readonly sliceBudgetBytes: number;
  private samples = 0;
  private accepted = 0;
  private finished = false;
  private clip: { bound: number; clipped: number } | null = null;
  /** Set by finish(). */
  stats: SliceStats | null = null;

  constructor(
    private readonly global: GlobalValues,
    readonly rule: RobustRule,
    options: RobustOptions = {},
  ) {
    this.label = options.label ?? `${rule.kind} aggregation`;
    this.manifest = global.manifest.map((s) => ({ ...s, shape: [...s.shape] }));
    this.retained = new RetainedUpdates(this.manifest, this.label);
    this.sliceBudgetBytes = options.sliceBudgetBytes ?? DEFAULT_SLICE_BUDGET_BYTES;
    if (!(Number.isSafeInteger(this.sliceBudgetBytes) && this.sliceBudgetBytes >= 4)) {
      throw new PatchFedError('bad-strategy-config', `${this.label}: the slice budget must be a whole number of bytes >= 4, got ${this.sliceBudgetBytes}.`);
    }
  }

  get count(): number {
    return this.accepted;
  }

  get totalSamples(): number {
    return this.samples;
  }

  async add(siteId: string, update: WeightRuns, numSamples: number): Promise<void> {
    if (this.finished) throw new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} finished.`, { subject: siteId });
    if (this.pending.has(siteId) || this.retained.updates.some((u) => u.siteId === siteId)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: the site already contributed to ${this.label}.`, { subject: siteId });
    }
    if (!(Number.isSafeInteger(numSamples) && numSamples >= 1)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: numSamples must be a positive integer, got ${String(numSamples)}.`, { subject: siteId });
    }
    checkManifestMatches(this.manifest, update.manifest, `update from site '${siteId}' (${this.label})`);
    this.pending.add(siteId);
    let path: string | null = null;
    try {
      path = await this.retained.retain(siteId, update);
      const norm = this.rule.kind === 'clipped-mean' ? await this.deltaNorm(update) : 0;
      // finish() may have run while this update was being read: it was not part of the result.
      if (this.finished) throw new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} finished.`, { subject: siteId });
      this.retained.accept({ siteId, numSamples, path });
      this.norms.set(siteId, norm);
      this.samples += numSamples;
      this.accepted++;
    } catch (e) {
      if (path) this.retained.forget(path);
      throw e instanceof PatchFedError ? e : new PatchFedError('update-unreadable', `${this.label}: the update from site '${siteId}' could not be kept (${errorMessage(e)}).`, { subject: siteId, cause: e });
    } finally {
      this.pending.delete(siteId);
    }
  }

  /** ‖update − global‖ over the whole model, in float64. */
  private async deltaNorm(update: WeightRuns): Promise<number> {
    let sq = 0;
    await update.forEachRun((tensor, offset, run) => {
      const g = this.global.read(tensor, offset, run.length);
      for (let j = 0; j < run.length; j++) {
        const d = (run[j] ?? 0) - (g[j] ?? 0);
        sq += d * d;
      }
    });
    return Math.sqrt(sq);
  }

  finish(sink: RunVisitor): void {
    if (this.finished) throw new PatchFedError('aggregation-closed', `${this.label} was already finished.`);
    if (this.count === 0) throw new PatchFedError('no-updates', `${this.label}: no site update was accepted, nothing to aggregate.`);
    this.finished = true;
    try {
      const files = this.retained.open();
      try {
        this.aggregate(files, sink);
      } finally {
        for (const f of files) f.close();
      }
    } finally {
      this.retained.discard();
    }
  }

  private aggregate(files: readonly WeightsFile[], sink: RunVisitor): void {
    const updates = this.retained.updates;
    const n = files.length;
    const sliceLength = sliceLengthForBudget(n, this.sliceBudgetBytes);
    let factors: number[] = [];
    let weights: number[] = [];
    if (this.rule.kind === 'clipped-mean') {
      const norms = updates.map((u) => this.norms.get(u.siteId) ?? 0);
      const bound = adaptiveClipBound(norms, this.rule.multiplier);
      factors = clipFactors(norms, bound);
      weights = updates.map((u) => u.numSamples);
      this.clip = { bound, clipped: factors.filter((f) => f < 1).length };
    }
    const modelElements = this.manifest.reduce((s, spec) => s + sizeOf(spec.shape), 0);
    const largest = Math.max(1, ...this.manifest.map((s) => sizeOf(s.shape)));
    const out = new Float32Array(Math.min(sliceLength, largest));
    let slicesPerSite = 0;
    this.manifest.forEach((spec, t) => {
      for (const { start, end } of sliceRanges(sizeOf(spec.shape), sliceLength)) {
        const len = end - start;
        // Each file's read() returns a view into that file's own scratch buffer: all n stay valid together.
        const slices = files.map((f) => f.read(t, start, len));
        const o = out.subarray(0, len);
        if (this.rule.kind === 'median') coordinateMedian(slices, o);
        else if (this.rule.kind === 'trimmed-mean') trimmedMean(slices, this.rule.beta, o);
        else clippedMean(slices, this.global.read(t, start, len), factors, weights, o);
        slicesPerSite++;
        sink(t, start, o);
      }
    });
    this.stats = { sites: n, sliceElements: sliceLength, sliceBytes: n * sliceLength * 4, slicesPerSite, modelElements, outputElements: out.length };
  }

  /** The clip bound of a clipped mean, for the checkpoint's meta.json (others: nothing). */
  checkpointAttachments(): CheckpointAttachments {
    return this.clip ? { extra: { robust: { rule: this.rule.kind, clipBound: this.clip.bound, clippedUpdates: this.clip.clipped, updates: this.count } } } : {};
  }

  dispose(): void {
    this.retained.discard();
  }
}

/** Median / trimmed mean / clipped FedAvg: FedAvg's site sampling, a robust aggregator. */
export class RobustStrategy implements Strategy {
  private readonly planner: SampleWeightedStrategy;

  constructor(
    readonly name: StrategyName,
    sampling: Partial<SamplingPolicy>,
    readonly rule: RobustRule,
    private readonly options: RobustOptions = {},
  ) {
    this.planner = new SampleWeightedStrategy(name, sampling, 0, []);
    if (rule.kind === 'trimmed-mean' && !(rule.beta >= 0 && rule.beta < 0.5)) throw new PatchFedError('bad-strategy-config', `Trimmed mean: β must be in [0, 0.5), got ${rule.beta}.`, { subject: 'beta' });
    if (rule.kind === 'clipped-mean' && !(Number.isFinite(rule.multiplier) && rule.multiplier > 0)) {
      throw new PatchFedError('bad-strategy-config', `Clipped FedAvg: the clip multiplier must be a positive number, got ${rule.multiplier}.`, { subject: 'clipMultiplier' });
    }
  }

  get sampling(): SamplingPolicy {
    return this.planner.sampling;
  }

  configureFit(round: number, global: { manifest: readonly WeightSpec[] }, sites: readonly SiteInfo[], rng?: Rng): FitPlan {
    return this.planner.configureFit(round, global, sites, rng);
  }

  beginAggregation(round: number, global: GlobalValues): RobustAggregator {
    return new RobustAggregator(global, this.rule, { ...this.options, label: `round ${round} (${this.name})` });
  }
}
