/**
 * A site's MSD dataset, opened lazily. Opening reads dataset.json and file headers only;
 * voxels are decoded when a case is first loaded, preprocessed, and kept in a byte-bounded LRU
 * cache, so a dataset far larger than RAM (MSD Liver) trains with flat memory.
 *
 * A case that fails while decoding (NaN/Inf voxels, undeclared label values, unreadable data)
 * is recorded in `problems`, dropped from `cases`, and skipped by `iterate`.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { DatasetProblem, LabelClass } from './manifest.ts';
import { BadCaseError, asCaseStep, decodeImage, decodeLabel } from './decode.ts';
import { ByteLruCache } from './lru-cache.ts';
import { readOptionsFor } from './memory-budget.ts';
import type { NiftiReadOptions } from '../../shared/nifti/index.ts';
import { CtForegroundPool, channelSchemes, type ChannelScheme, type CtChannelStats } from './normalize.ts';
import { imageLayout, preprocessImage, preprocessedBytes, type PreprocessedCase, type PreprocessedImage } from './preprocess.ts';
import { scanMsdDataset, type MsdCaseInfo, type MsdScan, type MsdTestImageInfo } from './scan.ts';
import { splitCaseIds, type DatasetSplit } from './split.ts';
import type { AnnotatedLabels } from '../../shared/config/site.ts';
import { isFullAnnotation, resolveAnnotation, type LabelAnnotation } from './annotated-labels.ts';

export const DEFAULT_CACHE_MB = 1024;

export interface OpenMsdDatasetOptions {
  /** Bound of the preprocessed-case cache in MiB (image float32 + label uint8 bytes). Default 1024. */
  cacheMB?: number;
  /** Refuse volumes promising more voxels than this (all channels). Default: the reader's. */
  maxVoxels?: number;
  /**
   * Memory budget in MB (the site's memoryBudgetMB): a case whose decoding and preprocessing
   * would need more is refused from its header, before any voxel is read. Default: the
   * reader's 2 GiB per volume.
   */
  maxMemoryMB?: number;
  /** Default seed for split(). Default 0. */
  seed?: string | number;
  /**
   * Foreground statistics of CT channels (index = channel; undefined for MRI channels), e.g.
   * the ones stored with a model. When omitted they are computed from this dataset on first need.
   */
  ctStats?: (CtChannelStats | undefined)[];
  /** Called for each problem found after opening (while decoding cases). */
  onProblem?: (problem: DatasetProblem) => void;
  /** The site config's `annotatedLabels`: the classes this ground truth holds (absent = all). */
  annotatedLabels?: AnnotatedLabels;
}

export interface DatasetCacheStats {
  maxBytes: number;
  bytes: number;
  entries: number;
  hits: number;
  misses: number;
  evictions: number;
  /** Training cases decoded from disk by load() (misses that read files). */
  decodes: number;
}

export class MsdDataset {
  readonly dir: string;
  readonly name: string;
  /** Modality names in channel order. */
  readonly modalities: string[];
  readonly labels: LabelClass[];
  readonly schemes: ChannelScheme[];
  readonly testImages: MsdTestImageInfo[];
  readonly seed: string | number;
  /** Partial annotation (annotated-labels.ts), or null when every class is annotated. */
  readonly annotation: LabelAnnotation | null;

  private readonly headerValid: MsdCaseInfo[];
  private readonly byId: Map<string, MsdCaseInfo>;
  private readonly found: DatasetProblem[];
  private readonly bad = new Map<string, DatasetProblem>();
  private readonly cache: ByteLruCache<PreprocessedCase>;
  private readonly inFlight = new Map<string, Promise<PreprocessedCase>>();
  private readonly read: NiftiReadOptions;
  private readonly onProblem?: (p: DatasetProblem) => void;
  private ctStatsPromise?: Promise<(CtChannelStats | undefined)[]>;
  private counters = { hits: 0, misses: 0, decodes: 0 };

  constructor(scan: MsdScan, opts: OpenMsdDatasetOptions = {}) {
    this.dir = scan.dir;
    this.name = scan.name;
    this.modalities = scan.modalities;
    this.labels = scan.labels;
    this.schemes = channelSchemes(scan.modalities);
    this.testImages = scan.testImages;
    this.headerValid = [...scan.cases].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.byId = new Map(this.headerValid.map((c) => [c.id, c]));
    this.found = [...scan.problems];
    this.seed = opts.seed ?? 0;
    this.read = readOptionsFor(opts.maxVoxels, opts.maxMemoryMB);
    this.onProblem = opts.onProblem;
    const annotation = opts.annotatedLabels ? resolveAnnotation(opts.annotatedLabels, this.labels, `annotatedLabels of dataset '${this.name}' (${this.dir})`) : null;
    this.annotation = annotation && !isFullAnnotation(annotation) ? annotation : null;
    const cacheMB = opts.cacheMB ?? DEFAULT_CACHE_MB;
    if (!(cacheMB >= 0) || !Number.isFinite(cacheMB)) {
      throw new PatchFedError('dataset-options', `cacheMB must be a finite number >= 0, got ${cacheMB}`);
    }
    this.cache = new ByteLruCache<PreprocessedCase>(Math.floor(cacheMB * 1024 * 1024), preprocessedBytes);
    if (opts.ctStats) this.ctStatsPromise = Promise.resolve(this.checkCtStats(opts.ctStats));
  }

  /** Usable training cases (sorted by id): header-valid and not found bad while decoding. */
  get cases(): MsdCaseInfo[] {
    return this.headerValid.filter((c) => !this.bad.has(c.id));
  }

  /** Every problem found so far: at open (dataset.json, headers) and while decoding. */
  get problems(): DatasetProblem[] {
    return [...this.found];
  }

  caseInfo(id: string): MsdCaseInfo {
    const info = this.byId.get(id);
    if (!info) throw new PatchFedError('dataset-unknown-case', `dataset '${this.name}' (${this.dir}) has no usable case '${id}'`, { subject: id });
    return info;
  }

  isUsable(id: string): boolean {
    return this.byId.has(id) && !this.bad.has(id);
  }

  /**
   * 60/20/20 split of the cases that passed the header checks (see split.ts). The split is
   * computed over all of them so that finding a bad case later never moves another case to a
   * different part; cases known to be bad are then left out of the lists.
   */
  split(seed: string | number = this.seed): DatasetSplit {
    const s = splitCaseIds(this.headerValid.map((c) => c.id), seed);
    const usable = (ids: string[]) => ids.filter((id) => !this.bad.has(id));
    return { train: usable(s.train), validation: usable(s.validation), test: usable(s.test) };
  }

  /** Element-wise maximum [X, Y, Z] over the usable cases (the box every case fits in). */
  largestShape(): [number, number, number] {
    const out: [number, number, number] = [0, 0, 0];
    for (const c of this.cases) for (const i of [0, 1, 2] as const) out[i] = Math.max(out[i], c.shape[i]);
    return out;
  }

  cacheStats(): DatasetCacheStats {
    return {
      maxBytes: this.cache.maxBytes,
      bytes: this.cache.bytes,
      entries: this.cache.size,
      evictions: this.cache.evictions,
      ...this.counters,
    };
  }

  /**
   * The preprocessed case (cached). Rejects with BadCaseError (a PatchFedError) when the case
   * turns out unusable; the case is then recorded in `problems` and dropped from `cases`.
   */
  async load(id: string): Promise<PreprocessedCase> {
    const info = this.caseInfo(id);
    const known = this.bad.get(id);
    if (known) throw new BadCaseError(known);
    const cached = this.cache.get(id);
    if (cached) {
      this.counters.hits++;
      return cached;
    }
    const pending = this.inFlight.get(id);
    if (pending) return pending;
    this.counters.misses++;
    const p = this.decodeAndPreprocess(info)
      .then((c) => {
        this.cache.set(id, c);
        return c;
      })
      .catch((e) => {
        if (e instanceof BadCaseError) this.markBad(e.problem);
        throw e;
      })
      .finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, p);
    return p;
  }

  /**
   * Load the given cases one at a time, skipping (and recording) bad ones. Throws PatchFedError
   * when none of them is usable. Only one decoded case beyond the cache is alive at a time.
   */
  async *iterate(ids: readonly string[]): AsyncGenerator<PreprocessedCase> {
    let yielded = 0;
    for (const id of ids) {
      if (!this.isUsable(id)) continue;
      let c: PreprocessedCase;
      try {
        c = await this.load(id);
      } catch (e) {
        if (e instanceof BadCaseError) continue;
        throw e;
      }
      yielded++;
      yield c;
    }
    if (yielded === 0 && ids.length > 0) {
      throw new PatchFedError('dataset-no-usable-case', `dataset '${this.name}' (${this.dir}): none of the ${ids.length} requested case(s) is usable:\n${formatProblems(this.found.filter((p) => p.caseId !== undefined && ids.includes(p.caseId)))}`, { subject: this.dir });
    }
  }

  /** Preprocess an unlabelled image from the `test` list (not cached: used once, for prediction). */
  async loadTestImage(id: string): Promise<PreprocessedImage> {
    const info = this.testImages.find((t) => t.id === id);
    if (!info) throw new PatchFedError('dataset-unknown-case', `dataset '${this.name}' (${this.dir}) has no usable test image '${id}'`, { subject: id });
    const ct = await this.intensityStats();
    const volume = await decodeImage(id, info.imagePath, this.read);
    return asCaseStep(id, info.imagePath, () => preprocessImage(id, volume, this.schemes, ct, info.imagePath));
  }

  /**
   * Per-channel CT foreground statistics (undefined for MRI channels). For a CT dataset the first
   * call decodes every usable training case once (one at a time) and pools foreground samples.
   */
  intensityStats(): Promise<(CtChannelStats | undefined)[]> {
    if (!this.ctStatsPromise) {
      this.ctStatsPromise = this.computeCtStats();
      // A failed computation (e.g. no foreground anywhere) must not be cached as the answer.
      this.ctStatsPromise.catch(() => (this.ctStatsPromise = undefined));
    }
    return this.ctStatsPromise;
  }

  private checkCtStats(stats: (CtChannelStats | undefined)[]): (CtChannelStats | undefined)[] {
    this.schemes.forEach((scheme, c) => {
      const s = stats[c];
      if (scheme === 'ct-clip-zscore' && (!s || ![s.lower, s.upper, s.mean, s.std].every(Number.isFinite) || s.lower > s.upper)) {
        throw new PatchFedError('dataset-options', `ctStats[${c}] must give finite lower <= upper, mean and std for CT channel ${c} (${this.modalities[c]})`);
      }
    });
    return this.schemes.map((scheme, c) => (scheme === 'ct-clip-zscore' ? stats[c] : undefined));
  }

  private async computeCtStats(): Promise<(CtChannelStats | undefined)[]> {
    const ctChannels = this.schemes.flatMap((s, c) => (s === 'ct-clip-zscore' ? [c] : []));
    if (ctChannels.length === 0) return this.schemes.map(() => undefined);
    const pool = new CtForegroundPool(this.schemes.length);
    for (const info of this.cases) {
      try {
        const label = await decodeLabel(info, this.labels, this.read);
        const image = await decodeImage(info.id, info.imagePath, this.read);
        await asCaseStep(info.id, info.imagePath, () => this.checkImageShape(info, image.dims));
        for (const c of ctChannels) pool.addCase(image.data, label.volume.data, c);
      } catch (e) {
        if (e instanceof BadCaseError) {
          this.markBad(e.problem);
          continue;
        }
        throw e;
      }
    }
    return this.schemes.map((scheme, c) => {
      if (scheme !== 'ct-clip-zscore') return undefined;
      const s = pool.stats(c);
      if (!s) {
        throw new PatchFedError('dataset-no-foreground', `dataset '${this.name}' (${this.dir}): no usable training case has foreground (label > 0) voxels, so CT channel ${c} cannot be normalised`, { subject: this.dir });
      }
      return s;
    });
  }

  private checkImageShape(info: MsdCaseInfo, dims: readonly number[]): void {
    const { shape } = imageLayout(dims, info.imagePath);
    if (shape.some((v, i) => v !== info.shape[i])) {
      throw new PatchFedError('shape-mismatch', `image shape ${shape.join('x')} differs from its header scan (${info.shape.join('x')}); was the file replaced?`);
    }
  }

  private async decodeAndPreprocess(info: MsdCaseInfo): Promise<PreprocessedCase> {
    const ct = await this.intensityStats();
    // The case may have been found bad by the statistics pass.
    const known = this.bad.get(info.id);
    if (known) throw new BadCaseError(known);
    this.counters.decodes++;
    // Label first: it is small, and a bad label spares decoding the image.
    const label = await decodeLabel(info, this.labels, this.read);
    const volume = await decodeImage(info.id, info.imagePath, this.read);
    return asCaseStep(info.id, info.imagePath, () => {
      this.checkImageShape(info, volume.dims);
      this.checkAnnotated(info, label.counts);
      const image = preprocessImage(info.id, volume, this.schemes, ct, info.imagePath);
      return { ...image, label: label.label, labelCounts: label.counts };
    });
  }

  /** A partially annotated site's label may hold only its channels' stored ids (annotated-labels.ts). */
  private checkAnnotated(info: MsdCaseInfo, counts: ReadonlyMap<number, number>): void {
    const a = this.annotation;
    if (!a) return;
    const stored = new Set(a.channels.map((c) => c.storedId));
    const foreign = [...counts].filter(([k, n]) => n > 0 && !stored.has(k)).map(([k]) => k);
    if (foreign.length > 0) {
      throw new PatchFedError('label-values', `${info.labelPath}: holds label ${foreign.join(', ')}, which annotatedLabels says this site does not annotate (it stores ${[...stored].join(', ')})`, { subject: info.labelPath });
    }
  }

  private markBad(problem: DatasetProblem): void {
    if (problem.caseId === undefined || this.bad.has(problem.caseId)) return;
    this.bad.set(problem.caseId, problem);
    this.cache.delete(problem.caseId);
    this.found.push(problem);
    this.onProblem?.(problem);
  }
}

export function formatProblems(problems: readonly DatasetProblem[]): string {
  return problems.map((p) => `  - ${p.caseId !== undefined ? `case ${p.caseId}: ` : ''}${p.file}: ${p.reason}`).join('\n');
}

/**
 * Open an MSD dataset folder: validates dataset.json (zod) and every listed file's header.
 * Bad cases are left out and listed in `problems`; throws PatchFedError when dataset.json is
 * unusable or no training case passes.
 */
export async function openMsdDataset(dir: string, opts: OpenMsdDatasetOptions = {}): Promise<MsdDataset> {
  const scan = await scanMsdDataset(dir, { maxVoxels: opts.maxVoxels, maxMemoryMB: opts.maxMemoryMB });
  if (scan.cases.length === 0) {
    throw new PatchFedError('dataset-no-usable-case', `dataset '${scan.name}' (${scan.dir}) has no usable training case:\n${formatProblems(scan.problems)}`, { subject: scan.dir });
  }
  return new MsdDataset(scan, opts);
}
