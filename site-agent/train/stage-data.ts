/**
 * Training data of one U-Net stage (thesis §3.3's four trainers, as data transforms):
 * - full:           whole cases, zero-padded to the planned shape
 * - patch:          sampled patches of the cases
 * - cascade-stage1: whole cases downsampled by the cascade factor (trilinear image, nearest label)
 * - cascade-stage2: patches of the full-resolution image + one-hot guidance from the ground truth
 *                   downsampled and upsampled again (nearest), as stage 1 would see it
 * Derived cases (downsampled, guided) are cached under a byte bound like the decoded ones.
 */
import type { MsdDataset } from '../data/index.ts';
import { ByteLruCache } from '../data/index.ts';
import type { CaseVolume, Shape3 } from '../pipeline/case.ts';
import { guidedCase, trainingGuidance } from '../pipeline/guidance.ts';
import { downsampleCase, downsampledShape } from '../pipeline/resample.ts';
import { assembleBatch, createRng, PatchSampler, type BatchItem, type TrainingBatch } from '../pipeline/sampler.ts';
import { isWholeVolumeStage, type Stage } from '../../shared/model/index.ts';

export interface StageDataOptions {
  stage: Stage;
  numClasses: number;
  /** Patch (whole padded volume for full / stage 1) and batch from the planner. */
  patch: Shape3;
  batch: number;
  /** U-Net divisor: downsampled shapes are rounded up to it. */
  divisor: number;
  cascadeFactor: number;
  seed: number;
  foregroundRate: number;
  skipEmpty: boolean;
  cacheMB?: number;
}

/** Bytes of a derived case, for the cache bound. */
function caseBytes(c: CaseVolume): number {
  return c.image.byteLength + (c.label?.byteLength ?? 0);
}

export class StageData {
  private readonly derived: ByteLruCache<CaseVolume>;
  private readonly samplers = new Map<string, PatchSampler>();
  private readonly rng: () => number;
  private order: string[] = [];
  private cursor = 0;
  /** Cases drawn so far; an epoch is one pass over the training ids. */
  drawn = 0;

  constructor(
    private readonly dataset: MsdDataset,
    readonly trainIds: readonly string[],
    readonly opts: StageDataOptions,
  ) {
    if (trainIds.length === 0) throw new Error('no training cases');
    this.rng = createRng(opts.seed);
    this.derived = new ByteLruCache<CaseVolume>((opts.cacheMB ?? 256) * 1024 * 1024, caseBytes);
  }

  /** The stage's view of a case (with label), cached. */
  async stageCase(id: string): Promise<CaseVolume> {
    const hit = this.derived.get(id);
    if (hit) return hit;
    const c = await this.dataset.load(id);
    const stage = this.opts.stage;
    let out: CaseVolume;
    if (stage === 'cascade-stage1') {
      out = downsampleCase(c, this.opts.cascadeFactor, { divisor: this.opts.divisor });
    } else if (stage === 'cascade-stage2') {
      const low = downsampledShape(c.shape, this.opts.cascadeFactor, { divisor: this.opts.divisor });
      out = guidedCase(c, trainingGuidance(c.label, c.shape, low), this.opts.numClasses);
    } else {
      return c; // already cached by the dataset
    }
    this.derived.set(id, out);
    return out;
  }

  private nextCaseId(): string {
    if (this.cursor >= this.order.length) {
      // A fresh seeded shuffle per epoch (Fisher–Yates).
      this.order = [...this.trainIds];
      for (let i = this.order.length - 1; i > 0; i--) {
        const j = Math.floor(this.rng() * (i + 1));
        [this.order[i], this.order[j]] = [this.order[j]!, this.order[i]!];
      }
      this.cursor = 0;
    }
    this.drawn++;
    return this.order[this.cursor++]!;
  }

  get epoch(): number {
    return Math.floor(this.drawn / this.trainIds.length);
  }

  async nextBatch(): Promise<TrainingBatch> {
    const items: BatchItem[] = [];
    for (let b = 0; b < this.opts.batch; b++) {
      const id = this.nextCaseId();
      const c = await this.stageCase(id);
      if (isWholeVolumeStage(this.opts.stage)) {
        items.push({ case: c, origin: [0, 0, 0] });
      } else {
        let sampler = this.samplers.get(id);
        if (!sampler) {
          sampler = new PatchSampler(c, this.opts.patch, {
            seed: (this.opts.seed * 7919 + this.samplers.size) | 0,
            foregroundRate: this.opts.foregroundRate,
            // A case without foreground cannot satisfy "skip empty patches": sample it plainly.
            skipEmpty: this.opts.skipEmpty && labelHasForeground(c.label!),
          });
          this.samplers.set(id, sampler);
        }
        items.push({ case: c, origin: sampler.sampleOrigins(1)[0]! });
      }
    }
    return assembleBatch(items, this.opts.patch, this.opts.numClasses);
  }
}

function labelHasForeground(label: Uint8Array): boolean {
  for (let i = 0; i < label.length; i++) if (label[i] !== 0) return true;
  return false;
}
