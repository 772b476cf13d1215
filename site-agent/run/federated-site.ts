/**
 * A site's side of a federated round, independent of the network: load the verified global
 * checkpoint into the site's own stage nets (keeping FedBN's local tensors), evaluate the global
 * model on the local validation split, train the requested steps with the site's own planned
 * patch/batch (FedProx adds its proximal term), and return the update, the sample count and
 * aggregate metrics. Nothing here knows about cases beyond the local dataset: only weights and
 * aggregate numbers leave this module.
 */
import type { BackendReport } from '../backend/index.ts';
import type { SiteConfig } from '../../shared/config/site.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { checkManifestMatches } from '../../shared/codec/index.ts';
import type { FitInstructions } from '../../shared/protocol/messages.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { openMsdDataset, type MsdDataset } from '../data/index.ts';
import { scoredLabelNames } from '../data/annotated-labels.ts';
import { nanMean } from '../metrics/dice.ts';
import { experimentLayout, roundTrainingSeed, type ModelLayout } from '../../shared/model/index.ts';
import { combinedWeights, createStageNets, setCombinedWeights, stageSlices, type StageNet } from './nets.ts';
import { evaluateCases } from './evaluate.ts';
import { planSite, type SitePlan } from './site-plan.ts';
import { siteTrainingOptions, trainSiteLocally } from './train-site.ts';

export interface ExperimentModel {
  id: string;
  labels: Record<string, string>;
  modalities: Record<string, string>;
  model: { mode: 'full' | 'patch' | 'cascade'; preset?: 'tiny' | 'cpu-small' | 'cpu-medium' | 'thesis'; base?: number; depth?: number; norm: 'batch' | 'instance'; cascadeFactor: number };
  learningRate: number;
  seed: number;
}

export interface RoundWork {
  round: number;
  steps: number;
  global: NamedWeights;
  /** The strategy's instructions for this site (FedProx μ, FedBN's local tensors). */
  fit: FitInstructions;
  learningRate?: number;
  signal?: AbortSignal;
  onProgress?: (stepsDone: number, stepsTotal: number, phase: 'training' | 'evaluating') => void;
}

export interface RoundOutcome {
  update: NamedWeights;
  samples: number;
  metrics: {
    loss: number;
    /** Validation Dice of the received global model, per label name (foreground). */
    dice: Record<string, number>;
    timeMs: number;
    peakMemoryBytes: number;
    backend: string;
    patch: [number, number, number];
    batch: number;
  };
}

function namesByIndex(record: Record<string, string>): string[] {
  return Object.keys(record)
    .map(Number)
    .sort((a, b) => a - b)
    .map((k) => record[String(k)]!);
}

export class FederatedSiteTrainer {
  private dataset!: MsdDataset;
  private nets: StageNet[] = [];
  private layout!: ModelLayout;
  private sitePlan!: SitePlan;
  private labelNames: string[] = [];
  private split!: { train: string[]; validation: string[]; test: string[] };
  private experimentId = '';
  private cascadeFactor = 0.5;
  private preparing: { id: string; promise: Promise<void> } | null = null;

  constructor(
    private readonly cfg: SiteConfig,
    private readonly backend: BackendReport,
    private readonly log: (msg: string) => void = () => {},
  ) {}

  get prepared(): boolean {
    return this.nets.length > 0;
  }

  /**
   * Opens the dataset, checks it against the experiment's schema, plans and builds the nets.
   * Concurrent calls for the same experiment share one preparation (the daemon prepares when the
   * experiment is announced and again before a task; two builds would race over `nets`).
   */
  prepare(exp: ExperimentModel): Promise<void> {
    if (this.experimentId === exp.id) return Promise.resolve();
    if (this.preparing?.id === exp.id) return this.preparing.promise;
    const previous = this.preparing?.promise.catch(() => undefined) ?? Promise.resolve();
    const promise = previous.then(() => this.prepareNow(exp)).finally(() => {
      if (this.preparing?.promise === promise) this.preparing = null;
    });
    this.preparing = { id: exp.id, promise };
    return promise;
  }

  private async prepareNow(exp: ExperimentModel): Promise<void> {
    if (this.experimentId === exp.id) return;
    this.dispose();
    this.dataset = await openMsdDataset(this.cfg.dataset, { cacheMB: this.cfg.cacheMB, seed: this.cfg.seed, maxMemoryMB: this.cfg.memoryBudgetMB, annotatedLabels: this.cfg.annotatedLabels });
    const want = namesByIndex(exp.modalities);
    if (this.dataset.modalities.length !== want.length) {
      throw new PatchFedError(
        'E_SCHEMA',
        `dataset ${this.cfg.dataset} has ${this.dataset.modalities.length} modalities (${this.dataset.modalities.join(', ')}) but experiment '${exp.id}' expects ${want.length} (${want.join(', ')})`,
      );
    }
    const labels = namesByIndex(exp.labels);
    if (this.dataset.labels.length !== labels.length) {
      throw new PatchFedError('E_SCHEMA', `dataset ${this.cfg.dataset} has ${this.dataset.labels.length} labels but experiment '${exp.id}' expects ${labels.length} (${labels.join(', ')})`);
    }
    this.labelNames = labels;
    this.split = this.dataset.split(this.cfg.seed);
    if (this.split.train.length === 0) throw new PatchFedError('E_DATASET', `dataset ${this.cfg.dataset} has no training case after the split`);
    this.layout = experimentLayout(exp);
    this.sitePlan = planSite({
      largestShape: this.dataset.largestShape(),
      channels: this.layout.channels,
      classes: this.layout.classes,
      mode: this.layout.mode,
      arch: this.layout.arch,
      budgetMB: this.cfg.memoryBudgetMB,
      cascadeFactor: exp.model.cascadeFactor,
      patch: this.cfg.training.patch,
      batch: this.cfg.training.batch,
    });
    this.cascadeFactor = exp.model.cascadeFactor;
    this.nets = createStageNets(this.sitePlan.stages, this.layout.arch, this.layout.classes, exp.seed);
    this.experimentId = exp.id;
    const main = this.mainStage();
    this.log(`planned ${this.layout.mode}: patch ${main.setup.patch.join('x')} batch ${main.setup.batch} (${this.sitePlan.plan.message})`);
  }

  private mainStage(): StageNet {
    return this.nets.find((n) => n.setup.stage !== 'cascade-stage1') ?? this.nets[0]!;
  }

  siteInfo(): { backend: string; gpu: boolean; memoryBudgetMB: number; patch?: [number, number, number]; batch?: number } {
    const info: { backend: string; gpu: boolean; memoryBudgetMB: number; patch?: [number, number, number]; batch?: number } = {
      backend: this.backend.name,
      gpu: this.backend.gpu,
      memoryBudgetMB: this.cfg.memoryBudgetMB,
    };
    if (this.prepared) {
      const m = this.mainStage();
      info.patch = [...m.setup.patch] as [number, number, number];
      info.batch = m.setup.batch;
    }
    return info;
  }

  /** Number of training cases: FedAvg's weight. */
  get trainingSamples(): number {
    return this.split.train.length;
  }

  private inference() {
    return {
      numClasses: this.layout.classes,
      overlap: this.cfg.training.overlap,
      blend: this.cfg.training.blend,
      divisor: this.sitePlan.divisor,
      cascadeFactor: this.cascadeFactor,
    };
  }

  /** Dice of the currently loaded weights on the validation split, per label name. */
  async validate(): Promise<Record<string, number>> {
    const ids = this.split.validation.length > 0 ? this.split.validation : this.split.train.slice(0, 1);
    const r = await evaluateCases(this.nets, this.dataset, ids, this.inference());
    const out: Record<string, number> = {};
    // A partially annotated site reports only what it scored, under the name of what its
    // annotators drew (e.g. 'whole tumour'); the others have no ground truth there.
    const scored = this.dataset.annotation ? scoredLabelNames(this.dataset.annotation) : null;
    r.perClass.forEach((d, k) => {
      const name = scored ? scored.get(k + 1) : this.labelNames[k + 1];
      // Aggregates only; a class absent from every validation case reports 0 rather than NaN on the wire.
      if (name !== undefined) out[name] = Number.isNaN(d) ? 0 : d;
    });
    return out;
  }

  loadGlobal(global: NamedWeights, localTensors: readonly string[] = []): void {
    const own = combinedWeights(this.nets);
    checkManifestMatches(own.manifest, global.manifest, `global checkpoint for experiment '${this.experimentId}'`);
    const keep = new Set(localTensors);
    const unknown = localTensors.filter((name) => !own.manifest.some((s) => s.name === name));
    if (unknown.length > 0) throw new PatchFedError('E_FIT', `the round task names local tensors this model does not have (${unknown.slice(0, 3).join(', ')}); refusing it`);
    setCombinedWeights(this.nets, global, (name) => keep.has(name));
  }

  async runRound(work: RoundWork): Promise<RoundOutcome> {
    if (!this.prepared) throw new Error('FederatedSiteTrainer.prepare() must run before a round');
    const t0 = performance.now();
    this.loadGlobal(work.global, work.fit.localTensors);
    work.onProgress?.(0, work.steps, 'evaluating');
    const dice = await this.validate();
    const mu = work.fit.proximalMu;
    const proximal = mu > 0 ? { mu, global: stageSlices(this.nets, work.global) } : undefined;
    const totalSteps = work.steps * this.nets.length;
    let stageIndex = 0;
    const basis = {
      dataset: this.dataset,
      trainIds: this.split.train,
      validationIds: [],
      nets: this.nets,
      numClasses: this.layout.classes,
      divisor: this.sitePlan.divisor,
      cascadeFactor: this.cascadeFactor,
      stepsPerStage: work.steps,
      seed: roundTrainingSeed(this.cfg.seed, work.round),
      memoryBudgetMB: this.cfg.memoryBudgetMB,
      restoreBest: false,
    };
    const reports = await trainSiteLocally({
      ...siteTrainingOptions(basis, this.cfg.training),
      // The round task's learning rate (signed by the coordinator) wins over the site's own.
      learningRate: work.learningRate ?? this.cfg.training.learningRate,
      proximal,
      cacheMB: this.cfg.cacheMB,
      signal: work.signal,
      onProgress: (p) => {
        if (p.step === p.steps) stageIndex++;
        work.onProgress?.(Math.min(totalSteps, stageIndex * work.steps + (p.step === p.steps ? 0 : p.step)), totalSteps, 'training');
      },
    });
    if (reports.some((r) => r.result.aborted)) throw new PatchFedError('E_ABORTED', `round ${work.round} was abandoned`);
    const losses = reports.map((r) => nanMean(r.result.losses.slice(-Math.max(1, Math.floor(r.result.losses.length / 4)))));
    const main = this.mainStage();
    return {
      update: combinedWeights(this.nets),
      samples: this.trainingSamples,
      metrics: {
        loss: nanMean(losses),
        dice,
        timeMs: performance.now() - t0,
        peakMemoryBytes: Math.max(0, ...reports.map((r) => r.result.peakMemory?.engineBytes ?? 0)),
        backend: this.backend.name,
        patch: [...main.setup.patch] as [number, number, number],
        batch: main.setup.batch,
      },
    };
  }

  dispose(): void {
    for (const n of this.nets) n.net.dispose();
    this.nets = [];
    this.experimentId = '';
  }
}
