/**
 * A server optimiser (FedAdam, FedYogi, FedAdagrad, FedAvgM: server-optimizers.ts) on top of any
 * strategy: the inner aggregator's result is the round's mean, its difference from the global
 * model the pseudo-gradient, and the new global x + step(m, v) is streamed to the checkpoint
 * writer block by block as the inner aggregator produces it (memory: the moments, O(model)).
 *
 * Only trainable tensors the strategy averages are optimised; FedBN's local tensors and running
 * statistics (not parameters: a server step could make a variance negative) take the inner
 * result unchanged.
 *
 * State: the moments live in memory and are saved with every checkpoint (server-optimizer-file.ts
 * plus a record in meta.json). restore() adopts the state of the checkpoint the round starts
 * from; it keeps the in-memory moments only when they are exactly that checkpoint's (same
 * sha256), so a failed aggregation — which may have updated them half-way — or a restart reloads
 * the committed state.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { GlobalValues, RunVisitor, WeightRuns } from '../../shared/codec/index.ts';
import type { WeightRole, WeightSpec } from '../../shared/weights.ts';
import { sizeOf } from '../../shared/weights.ts';
import { decodeServerOptimizerFile, encodeServerOptimizerFile, SERVER_OPTIMIZER_FILE, serverOptimizerRecordSchema } from './server-optimizer-file.ts';
import {
  applyServerStep,
  beginServerStep,
  checkServerOptimizerSpec,
  commitServerStep,
  createServerOptimizerState,
  type ServerOptimizerSpec,
  type ServerOptimizerState,
} from './server-optimizers.ts';
import type { Aggregator, CheckpointAttachments, FitPlan, Rng, SavedCheckpoint, SiteInfo, Strategy, StrategyName } from './types.ts';

/** Offset of each tensor in the optimiser's flat parameter vector (-1: not optimised), and its length. */
export function optimisedLayout(manifest: readonly WeightSpec[], localRoles: readonly WeightRole[]): { offsets: number[]; parameters: number } {
  const offsets: number[] = [];
  let parameters = 0;
  for (const spec of manifest) {
    if (spec.trainable && !localRoles.includes(spec.role)) {
      offsets.push(parameters);
      parameters += sizeOf(spec.shape);
    } else offsets.push(-1);
  }
  return { offsets, parameters };
}

export class ServerOptimizedStrategy implements Strategy {
  readonly name: StrategyName;
  private state: ServerOptimizerState | null = null;
  /** sha256 of the saved state `state` equals, or null when it may have moved since (or was never saved). */
  private savedSha: string | null = null;

  constructor(
    readonly inner: Strategy,
    readonly optimizer: ServerOptimizerSpec,
    private readonly localRoles: readonly WeightRole[],
  ) {
    this.name = inner.name;
    checkServerOptimizerSpec(optimizer);
  }

  /** The optimiser state in memory (tests, tools). */
  get currentState(): Readonly<ServerOptimizerState> | null {
    return this.state;
  }

  configureFit(round: number, global: { manifest: readonly WeightSpec[] }, sites: readonly SiteInfo[], rng?: Rng): FitPlan {
    return this.inner.configureFit(round, global, sites, rng);
  }

  restore(checkpoint: SavedCheckpoint): void {
    this.inner.restore?.(checkpoint);
    const what = `checkpoint v${checkpoint.version} (round ${checkpoint.round})`;
    const saved = checkpoint.extra.serverOptimizer;
    if (saved === undefined) {
      // The initial model: the optimiser starts from m = 0, v = τ² at the first aggregation.
      if (checkpoint.round === 0) {
        this.state = null;
        this.savedSha = null;
        return;
      }
      throw new PatchFedError(
        'server-optimizer-state-missing',
        `${what} carries no ${this.optimizer.kind} state: it was written without a server optimiser, so the optimiser cannot resume exactly. Start a new experiment id to add one.`,
        { subject: String(checkpoint.version) },
      );
    }
    const record = serverOptimizerRecordSchema.safeParse(saved);
    if (!record.success) throw new PatchFedError('server-optimizer-state-corrupt', `${what}: meta.json extra.serverOptimizer is not valid.`, { subject: String(checkpoint.version) });
    if (record.data.kind !== this.optimizer.kind) {
      throw new PatchFedError(
        'server-optimizer-changed',
        `${what} carries ${record.data.kind} state but the experiment now uses ${this.optimizer.kind}; changing the server optimiser mid-experiment is refused. Use a new experiment id.`,
        { subject: String(checkpoint.version) },
      );
    }
    if (this.state && this.savedSha === record.data.sha256) return;
    const bytes = checkpoint.readFile(SERVER_OPTIMIZER_FILE);
    if (!bytes) throw new PatchFedError('server-optimizer-state-missing', `${what}: ${SERVER_OPTIMIZER_FILE} is missing from the checkpoint directory.`, { subject: String(checkpoint.version) });
    const { state, record: inFile } = decodeServerOptimizerFile(bytes, `${what} ${SERVER_OPTIMIZER_FILE}`);
    if (inFile.sha256 !== record.data.sha256) {
      throw new PatchFedError('server-optimizer-state-corrupt', `${what}: ${SERVER_OPTIMIZER_FILE} holds state ${inFile.sha256.slice(0, 12)}…, meta.json records ${record.data.sha256.slice(0, 12)}….`, { subject: String(checkpoint.version) });
    }
    this.state = state;
    this.savedSha = inFile.sha256;
  }

  beginAggregation(round: number, global: GlobalValues): Aggregator {
    const layout = optimisedLayout(global.manifest, this.localRoles);
    if (!this.state) {
      this.state = createServerOptimizerState(this.optimizer, layout.parameters);
      this.savedSha = null;
    }
    if (this.state.m.length !== layout.parameters) {
      throw new PatchFedError('server-optimizer', `Server optimiser: the state holds ${this.state.m.length} parameters, the model optimises ${layout.parameters}.`);
    }
    const state = this.state;
    return new ServerOptimizedAggregator(this.inner.beginAggregation(round, global), global, this.optimizer, state, layout.offsets, {
      moving: () => {
        this.savedSha = null;
      },
      saved: (sha256) => {
        if (this.state === state) this.savedSha = sha256;
      },
    });
  }
}

class ServerOptimizedAggregator implements Aggregator {
  private stepped = false;
  private buffer = new Float32Array(0);

  constructor(
    private readonly inner: Aggregator,
    private readonly global: GlobalValues,
    private readonly spec: ServerOptimizerSpec,
    private readonly state: ServerOptimizerState,
    private readonly offsets: readonly number[],
    private readonly owner: { moving(): void; saved(sha256: string): void },
  ) {}

  get count(): number {
    return this.inner.count;
  }

  get totalSamples(): number {
    return this.inner.totalSamples;
  }

  add(siteId: string, update: WeightRuns, numSamples: number): Promise<void> {
    return this.inner.add(siteId, update, numSamples);
  }

  finish(sink: RunVisitor): void {
    const step = beginServerStep(this.spec, this.state);
    this.owner.moving();
    this.inner.finish((tensor, offset, mean) => {
      const base = this.offsets[tensor] ?? -1;
      if (base < 0) return sink(tensor, offset, mean);
      if (this.buffer.length < mean.length) this.buffer = new Float32Array(mean.length);
      const out = this.buffer.subarray(0, mean.length);
      // The inner aggregator is done with its own read of this stretch of the global once it hands over `mean`.
      applyServerStep(this.spec, this.state, step, base + offset, this.global.read(tensor, offset, mean.length), mean, out);
      sink(tensor, offset, out);
    });
    commitServerStep(this.state, step);
    this.stepped = true;
  }

  checkpointAttachments(): CheckpointAttachments {
    const inner = this.inner.checkpointAttachments?.() ?? {};
    if (!this.stepped) return inner;
    const { bytes, record } = encodeServerOptimizerFile(this.state);
    this.owner.saved(record.sha256);
    return { files: { ...inner.files, [SERVER_OPTIMIZER_FILE]: bytes }, extra: { ...inner.extra, serverOptimizer: record } };
  }

  dispose(): void {
    this.inner.dispose?.();
  }
}
