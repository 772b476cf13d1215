/**
 * One round's work on a site: download the global checkpoint (signature checked against the
 * pinned key before the first byte, size and sha256 after the last), run the training handler,
 * encode and upload the update. Both transfers survive reconnects and coordinator restarts: they
 * wait for the next authenticated connection and resume (the upload from the last acknowledged
 * chunk, same transfer id).
 *
 * The encoded update is kept after the upload, so when the coordinator retries the round with
 * the same global model (a new attempt), the site sends it again without retraining.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { checkManifestMatches, encodeWeights } from '../../shared/codec/index.ts';
import type { KeyPairs } from '../../shared/crypto/keys.ts';
import { CheckpointDownload } from '../../shared/protocol/checkpoint-transfer.ts';
import { metricsSchema, type ExperimentDescription, type FitInstructions, type Message, type Metrics } from '../../shared/protocol/messages.ts';
import type { ControlBody } from '../../shared/protocol/signed-control.ts';
import { MAX_PAYLOAD_BYTES } from '../../shared/protocol/limits.ts';
import type { GaussianSampler } from '../../shared/dp/gaussian.ts';
import { privatiseSiteUpdate } from '../../shared/dp/site-update.ts';
import { firstNonFinite } from '../../shared/codec/weights-checks.ts';
import type { WithheldReport } from '../../shared/config/site.ts';
import { withholdMetrics } from './withheld-reports.ts';
import { UpdateSender, isTransferInterrupted } from '../../shared/protocol/transfer.ts';
import type { RequestTransport } from '../../shared/protocol/transport.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import type { ClientLog } from './client-connection.ts';
import { SecureSession } from './secure-session.ts';

export interface RoundTask {
  round: number;
  /** Attempt of the round (retries reuse the same global model). */
  attempt: number;
  experimentId: string;
  /** The signed experiment description (model, labels, modalities, learning rate...). */
  experiment: ExperimentDescription;
  steps: number;
  /** What the coordinator's strategy decided for this site (from the signed task). */
  fit: FitInstructions;
  /** Unix ms by which the update should be committed. */
  deadline: number;
  checkpointVersion: number;
  checkpointSha256: string;
  /** Downloaded, sha256- and signature-verified against the pinned coordinator key, decoded. */
  global: NamedWeights;
}

export interface RoundResult {
  update: NamedWeights;
  /** Training samples behind the update (its weight in the average). */
  samples: number;
  metrics: Metrics;
}

export type TaskPhase = 'downloading' | 'training' | 'evaluating' | 'uploading';

export interface TaskControl {
  /** Reports progress to the coordinator (throttled); phase defaults to 'training'. */
  progress(stepsDone: number, stepsTotal: number, phase?: TaskPhase): void;
  /** Aborted when the round is cancelled, superseded by a newer round, or the client stops. */
  signal: AbortSignal;
}

export type TaskHandler = (task: RoundTask, ctl: TaskControl) => Promise<RoundResult>;

export interface JobEnvironment {
  siteId: string;
  keys: KeyPairs;
  /** Shared X25519 key with the coordinator. */
  sharedKey: Uint8Array;
  pinnedCoordinatorSignPublicKey: Uint8Array;
  chunkBytes?: number;
  /** Reports the site does not send (withheld-reports.ts). */
  withhold?: readonly WithheldReport[];
  /** Source of this site's DP noise (tests, reproducible simulations); default cryptographically seeded per update. */
  dpSampler?: () => GaussianSampler;
  log: ClientLog;
  ready(signal: AbortSignal): Promise<RequestTransport>;
  sendStatus(status: Message<'status'>): void;
  sendError(code: string, message: string): void;
  /** Tells the coordinator the site cannot take part in this attempt (signed round-decline); false while offline. */
  decline(round: number, attempt: number, code: string, reason: string): boolean;
  handler(): TaskHandler | null;
  emit(event: string, payload: unknown): void;
}

type JobState = 'downloading' | 'training' | 'uploading' | 'done' | 'failed' | 'cancelled';

/** Minimum time between two progress messages (phase changes and completion always go out). */
const STATUS_INTERVAL_MS = 1000;

/** Wire codes (lower-case) for the site's own error codes that mean "cannot take part". */
const DECLINE_CODES: Record<string, string> = { E_BUDGET: 'budget-too-small', E_SCHEMA: 'dataset-mismatch', E_DATASET: 'dataset-unusable' };
/**
 * Codes whose message may go to the coordinator as the decline reason: it describes the budget
 * and the model, never a case or a file. Any other failure is sent as its code only.
 */
const SHAREABLE_REASONS = new Set(['E_BUDGET']);

/** Upload refusals that are the coordinator's passing trouble, not the update's: retried with backoff. */
const TRANSIENT_UPLOAD_CODES = new Set(['internal-error']);
const MAX_TRANSIENT_UPLOAD_RETRIES = 12;

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function pauseUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function declineCode(code: string): string {
  return DECLINE_CODES[code] ?? (code.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+/, '').slice(0, 64) || 'cannot-take-part');
}

export class TaskJob {
  readonly round: number;
  readonly checkpointSha256: string;
  state: JobState = 'downloading';
  /** Highest attempt the coordinator asked for. */
  private latestAttempt: number;
  private latestDeadline: number;
  private uploadedAttempt: number | null = null;
  private result: { payload: Uint8Array; samples: number; metrics: Metrics } | null = null;
  private readonly controller = new AbortController();
  private running: Promise<void> | null = null;
  private lastStatus = { at: 0, phase: '', done: -1 };
  /** Why this job cannot do the round (declined to the coordinator; declined again for a retry). */
  private failure: { code: string; reason: string } | null = null;
  /** Secure aggregation: the session of the newest attempt (each attempt masks with fresh keys). */
  private secure: SecureSession | null = null;
  /**
   * Secure aggregation: the update as it may leave the site (DP: clipped and noised once), kept
   * to mask it again for a retried attempt — the same noise, never a fresh draw of the same update.
   */
  private trained: { update: NamedWeights; samples: number; metrics: Metrics; global: NamedWeights } | null = null;
  /** Secure aggregation: the attempt `result` was masked for. */
  private maskedFor = 0;

  constructor(
    private readonly env: JobEnvironment,
    private readonly task: ControlBody<'round-task'>,
    private readonly experiment: ExperimentDescription,
  ) {
    this.round = task.round;
    this.checkpointSha256 = task.checkpoint.sha256;
    this.latestAttempt = task.attempt;
    this.latestDeadline = task.deadline;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get busy(): boolean {
    return this.state === 'downloading' || this.state === 'training' || this.state === 'uploading';
  }

  /** Whether this job can serve a task for the same round with the same global model. */
  matches(task: ControlBody<'round-task'>): boolean {
    return task.round === this.round && task.checkpoint.sha256 === this.checkpointSha256 && this.state !== 'cancelled';
  }

  /** The coordinator (re)sent the task of this round: keep going, or upload the kept update again. */
  renew(task: ControlBody<'round-task'>): void {
    const attempt = task.attempt;
    this.latestAttempt = Math.max(this.latestAttempt, attempt);
    this.latestDeadline = task.deadline;
    // A new attempt of a secure round runs a new aggregation: fresh keys now, the update masked again.
    if (this.secure && attempt > this.secure.attempt && this.state !== 'failed') this.startSecure(attempt);
    if (this.state === 'failed' && this.failure) {
      // Same round, same global model: the reason still holds; say so instead of going silent.
      this.env.decline(this.round, attempt, this.failure.code, this.failure.reason);
      return;
    }
    if (this.busy || !this.result) return;
    if (this.uploadedAttempt === attempt) return; // already delivered for this attempt
    this.running = this.uploadLoop();
  }

  start(): Promise<void> {
    this.running ??= this.runAll();
    return this.running;
  }

  cancel(reason: string): void {
    if (!this.busy) return;
    this.state = 'cancelled';
    this.controller.abort(new PatchFedError('task-cancelled', reason));
  }

  /** Settles when the current work stops (never rejects). */
  async settled(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  /** A verified coordinator push of secure aggregation (secagg-roster / -envelopes / -unmask) for this job's round. */
  onSecAgg(push: SecAggPush): void {
    const session = this.secure;
    if (!session || push.body.round !== this.round) return;
    if (push.type === 'secagg-roster') session.onRoster(push.body);
    else if (push.type === 'secagg-envelopes') session.onEnvelopes(push.body);
    else session.onUnmask(push.body);
  }

  /**
   * Whether the task and the signed experiment agree on secure aggregation (a coordinator cannot
   * quietly switch it off for a round, nor on with other parameters); starts the key step if on.
   */
  private checkSecure(): boolean {
    const wanted = this.experiment.aggregation?.secure;
    const fit = this.task.fit.secureAggregation;
    if (!wanted && !fit) return true;
    if (!wanted || !fit || fit.threshold !== wanted.threshold || fit.clipRange !== wanted.clipRange || fit.sampleCap !== wanted.sampleCap || fit.neighbours !== wanted.neighbours) {
      const why = !fit ? 'the experiment aggregates securely but the task does not' : !wanted ? 'the task asks for secure aggregation but the experiment does not' : "the task's secure-aggregation parameters differ from the experiment's";
      this.fail('secagg-mismatch', `Round ${this.round} refused: ${why}.`, true);
      return false;
    }
    this.startSecure(this.latestAttempt);
    return true;
  }

  private startSecure(attempt: number): void {
    const fit = this.task.fit.secureAggregation;
    if (!fit) return;
    const { env } = this;
    const session = new SecureSession(
      { siteId: env.siteId, experimentId: this.task.experimentId, signSecretKey: env.keys.signSecretKey, log: env.log, ready: (signal) => env.ready(signal), sendError: (code, message) => env.sendError(code, message) },
      this.round,
      attempt,
      fit,
      this.signal,
    );
    this.secure?.supersede();
    this.secure = session;
    void session.start();
    if (this.trained && !this.busy && this.uploadedAttempt !== null && this.uploadedAttempt < attempt) this.running = this.uploadLoop();
  }

  private async runAll(): Promise<void> {
    const { env } = this;
    if (!this.checkSecure()) return;
    const global = await this.download();
    if (!global) return;
    const handler = env.handler();
    if (!handler) {
      this.fail('no-task-handler', 'The site has no training handler registered.', true);
      return;
    }
    this.state = 'training';
    this.status(0, this.task.steps, 'training', true);
    let result: RoundResult;
    try {
      result = await handler(
        {
          round: this.round,
          attempt: this.latestAttempt,
          experimentId: this.task.experimentId,
          experiment: this.experiment,
          steps: this.task.steps,
          fit: this.task.fit,
          deadline: this.latestDeadline,
          checkpointVersion: this.task.checkpoint.version,
          checkpointSha256: this.checkpointSha256,
          global,
        },
        { progress: (done, total, phase) => this.status(done, total, phase ?? 'training', false), signal: this.signal },
      );
    } catch (e) {
      if (this.signal.aborted) return;
      const code = e instanceof PatchFedError ? e.code : 'training-failed';
      env.log('error', `cannot take part in round ${this.round}: ${errorMessage(e)}`, { code });
      // Only the code goes to the coordinator, unless the message is known to name no case or file.
      const reason = e instanceof PatchFedError && SHAREABLE_REASONS.has(e.code) ? e.message : `Local training for round ${this.round} failed (${code}; details in the site log).`;
      this.fail(code, reason, true);
      return;
    }
    if (this.signal.aborted) return;
    try {
      const prepared = this.prepare(result, global);
      if (this.secure) {
        // encodeWeights refuses non-finite values on the plain path; the ring encoding would clamp an infinity.
        refuseNonFinite(prepared.update, `update of round ${this.round}`);
        this.trained = { ...prepared, global };
        this.result = await this.masked();
      } else {
        this.result = { payload: encodeWeights(prepared.update, `update of round ${this.round}`), samples: prepared.samples, metrics: prepared.metrics };
      }
    } catch (e) {
      if (this.signal.aborted) return;
      const err = e instanceof PatchFedError ? e : new PatchFedError('bad-update', errorMessage(e));
      env.log('error', `the update of round ${this.round} cannot be sent`, { code: err.code, error: err.message });
      this.fail(err.code, `The update of round ${this.round} was not sent: ${err.message}`.slice(0, 900), true);
      return;
    }
    await this.uploadLoop();
  }

  /** Validates what the handler returned and applies the task's DP (the update that may leave the site). */
  private prepare(result: RoundResult, global: NamedWeights): { update: NamedWeights; samples: number; metrics: Metrics } {
    if (!result || typeof result !== 'object') throw new PatchFedError('bad-update', 'the task handler returned no result');
    if (!Number.isSafeInteger(result.samples) || result.samples < 1) {
      throw new PatchFedError('bad-update', `samples must be a positive integer, got ${String(result.samples)}`);
    }
    const metrics = metricsSchema.safeParse(withholdMetrics(result.metrics, this.env.withhold ?? []));
    if (!metrics.success) {
      const issue = metrics.error.issues[0]!; // zod: a failed parse has at least one issue
      throw new PatchFedError('bad-metrics', `metrics.${issue.path.join('.')}: ${issue.message}`);
    }
    checkManifestMatches(global.manifest, result.update.manifest, `update of round ${this.round}`);
    // DP-FedAvg: clip (and, distributed DP, noise) with the parameters of the signed task only.
    let update = result.update;
    const dp = this.task.fit.dp;
    if (dp) {
      const privatised = privatiseSiteUpdate(update, global, dp, this.task.fit.localTensors, this.env.dpSampler?.());
      update = privatised.update;
      const r = privatised.report;
      this.env.log('info', `round ${this.round}: update clipped to C = ${dp.clipNorm} (norm ${r.norm.toPrecision(4)}, factor ${r.factor.toPrecision(4)}), noise std ${r.noiseStd}`);
    }
    return { update, samples: result.samples, metrics: metrics.data };
  }

  /**
   * The kept update masked for the newest attempt's session (ring payload; the commit's sample
   * count is a placeholder 1). Under DP the update is the clipped, noised one and is masked with
   * weight 1: DP-FedAvg's sum weights every site alike (fixed-point.ts).
   */
  private async masked(): Promise<{ payload: Uint8Array; samples: number; metrics: Metrics }> {
    for (;;) {
      const session = this.secure;
      const trained = this.trained;
      if (!session || !trained) throw new PatchFedError('secagg-phase', `Round ${this.round}: nothing to mask.`);
      try {
        const weighting = this.task.fit.dp ? 'unit' : { samples: trained.samples };
        const { payload } = await session.maskedPayload(trained.update, trained.global, weighting, this.task.fit.localTensors);
        this.maskedFor = session.attempt;
        return { payload, samples: 1, metrics: trained.metrics };
      } catch (e) {
        if (this.secure !== session && !this.signal.aborted) continue; // a newer attempt's session took over: mask for it
        throw e;
      }
    }
  }

  private async download(): Promise<NamedWeights | null> {
    const { env, task } = this;
    let download: CheckpointDownload;
    try {
      download = new CheckpointDownload({
        experimentId: task.experimentId,
        checkpoint: task.checkpoint,
        pinnedCoordinatorSignPublicKey: env.pinnedCoordinatorSignPublicKey,
        // Download progress is bytes, not steps: no step has run yet (the dashboard shows both).
        onProgress: (bytes, total) => this.status(0, task.steps, 'downloading', false, { done: bytes, total }),
      });
    } catch (e) {
      this.refuseCheckpoint(e);
      return null;
    }
    this.status(0, task.steps, 'downloading', true, { done: 0, total: task.checkpoint.size });
    for (;;) {
      let transport: RequestTransport;
      try {
        transport = await env.ready(this.signal);
      } catch {
        return null; // cancelled or client stopped
      }
      try {
        return await download.run(transport);
      } catch (e) {
        if (this.signal.aborted) return null;
        if (isTransferInterrupted(e)) continue;
        this.refuseCheckpoint(e);
        return null;
      }
    }
  }

  private refuseCheckpoint(e: unknown): void {
    const err = e instanceof PatchFedError ? e : new PatchFedError('checkpoint-refused', errorMessage(e));
    this.env.log('error', `refusing the checkpoint of round ${this.round}`, { code: err.code, error: err.message });
    this.env.emit('checkpoint-refused', { round: this.round, code: err.code, message: err.message });
    this.fail(err.code, `Checkpoint v${this.task.checkpoint.version} refused: ${err.message}`.slice(0, 900), false);
  }

  /** This attempt cannot be done: tell the coordinator why (a signed decline, so the round need not wait for us). */
  private fail(code: string, message: string, emitTaskFailed: boolean): void {
    this.state = 'failed';
    this.failure = { code: declineCode(code), reason: message };
    if (!this.env.decline(this.round, this.latestAttempt, this.failure.code, message)) this.env.sendError(code, message);
    if (emitTaskFailed) this.env.emit('task-failed', { round: this.round, code, message });
  }

  /** Uploads the kept update for the newest attempt; retries on interruptions and attempt changes. */
  private async uploadLoop(): Promise<void> {
    const { env } = this;
    const result = this.result!;
    this.state = 'uploading';
    for (;;) {
      const attempt = this.latestAttempt;
      if (this.secure && this.maskedFor !== this.secure.attempt) {
        // Masks are bound to one attempt: mask the kept update again for the new one.
        try {
          this.result = await this.masked();
        } catch (e) {
          if (this.signal.aborted) return;
          this.state = 'failed';
          env.log('warn', `the update of round ${this.round} could not be masked for attempt ${this.secure.attempt}`, { error: errorMessage(e) });
          return;
        }
      }
      const payload = this.result?.payload ?? result.payload;
      const sender = new UpdateSender({ payload, round: this.round, siteId: env.siteId, keys: { sharedKey: env.sharedKey, signSecretKey: env.keys.signSecretKey }, chunkBytes: Math.min(env.chunkBytes ?? this.task.upload.chunkBytes, this.task.upload.chunkBytes), window: this.task.upload.window, payloadKind: this.secure ? 'secagg-ring' : 'weights' });
      this.status(this.task.steps, this.task.steps, 'uploading', true);
      let outcome: { sha256: string } | PatchFedError | null = null;
      let retries = 0;
      while (outcome === null) {
        let transport: RequestTransport;
        try {
          transport = await env.ready(this.signal);
        } catch {
          return; // cancelled or client stopped
        }
        try {
          outcome = await sender.upload(transport, { samples: this.result?.samples ?? result.samples, metrics: result.metrics });
        } catch (e) {
          if (this.signal.aborted) return;
          if (isTransferInterrupted(e)) continue; // wait for the next connection and resume
          outcome = e instanceof PatchFedError ? e : new PatchFedError('upload-failed', errorMessage(e));
          // The coordinator's own trouble (e.g. its disk is full): not this update's fault; resume later.
          if (TRANSIENT_UPLOAD_CODES.has(outcome.code) && retries < MAX_TRANSIENT_UPLOAD_RETRIES) {
            const pause = Math.min(30_000, 1000 * 2 ** retries++);
            env.log('warn', `the coordinator could not take the update of round ${this.round} now (${outcome.code}: ${outcome.message}); retrying in ${Math.round(pause / 1000)} s`);
            outcome = null;
            if (!(await pauseUnlessAborted(pause, this.signal))) return;
          }
        }
      }
      if (!(outcome instanceof PatchFedError)) {
        this.uploadedAttempt = attempt;
        this.state = 'done';
        env.emit('uploaded', { round: this.round, attempt, transferId: sender.transferId, sha256: outcome.sha256, bytes: payload.length });
        if (this.latestAttempt === attempt) return;
        continue; // a newer attempt was announced while uploading: deliver it there too
      }
      if (this.latestAttempt > attempt && (outcome.code === 'stale-update' || outcome.code === 'no-round')) continue;
      this.state = 'failed';
      env.log('warn', `the coordinator refused the update of round ${this.round}`, { code: outcome.code, error: outcome.message });
      env.emit('rejected', { round: this.round, attempt, code: outcome.code, message: outcome.message });
      return;
    }
  }

  /** Sends the phase with its steps (and bytes, for a transfer); throttled except at phase changes and completion. */
  private status(done: number, total: number, phase: TaskPhase, force: boolean, bytes?: { done: number; total: number }): void {
    const now = Date.now();
    const stepsTotal = clampCount(total, 10_000_000);
    const stepsDone = Math.min(stepsTotal, clampCount(done, 10_000_000));
    const bytesTotal = bytes ? clampCount(bytes.total, MAX_PAYLOAD_BYTES) : undefined;
    const bytesDone = bytes ? Math.min(bytesTotal!, clampCount(bytes.done, MAX_PAYLOAD_BYTES)) : undefined;
    // What "finished" means depends on the phase: all bytes for a transfer, all steps otherwise.
    const [progress, goal] = bytes ? [bytesDone!, bytesTotal!] : [stepsDone, stepsTotal];
    const phaseChanged = phase !== this.lastStatus.phase;
    const finished = progress === goal && this.lastStatus.done !== progress;
    if (!force && !phaseChanged && !finished && now - this.lastStatus.at < STATUS_INTERVAL_MS) return;
    this.lastStatus = { at: now, phase, done: progress };
    this.env.sendStatus({ round: this.round, stepsDone, stepsTotal, phase, ...(bytes ? { bytesDone, bytesTotal } : {}) });
  }
}

/** A coordinator push of secure aggregation, verified by the client. */
export type SecAggPush =
  | { type: 'secagg-roster'; body: ControlBody<'secagg-roster'> }
  | { type: 'secagg-envelopes'; body: ControlBody<'secagg-envelopes'> }
  | { type: 'secagg-unmask'; body: ControlBody<'secagg-unmask'> };

function refuseNonFinite(weights: NamedWeights, source: string): void {
  weights.values.forEach((v, t) => {
    const bad = firstNonFinite(v);
    const name = weights.manifest[t]?.name ?? String(t);
    if (bad >= 0) throw new PatchFedError('weights-not-finite', `${source}: tensor '${name}' has a non-finite value (${v[bad]}) at element ${bad}.`, { subject: name });
  });
}

function clampCount(n: number, max: number): number {
  return Number.isFinite(n) ? Math.max(0, Math.min(max, Math.floor(n))) : 0;
}
