/**
 * CoordinatorClient: everything a site daemon needs from the federation, behind one object.
 *
 *   const client = new CoordinatorClient({ url, siteId, keys, coordinatorPublicKey });
 *   client.onTask(async (task, { progress, signal }) => { ...train on task.global...; return { update, samples, metrics }; });
 *   client.start();
 *
 * It connects (and reconnects forever, with backoff), authenticates against the PINNED
 * coordinator key, verifies the signed experiment description, and for every round task
 * downloads and verifies the global checkpoint, runs the handler and uploads the encrypted,
 * signed update — resuming interrupted transfers. A checkpoint whose signature or hash does not
 * verify is refused: the handler never sees it and the coordinator is told. Only site message
 * types ever leave the site, and none of them can carry images, labels or per-case data.
 */
import { EventEmitter } from 'node:events';
import nacl from 'tweetnacl';
import type { Socket } from 'socket.io-client';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import type { KeyPairs, PublicKeys } from '../../shared/crypto/keys.ts';
import { deriveSharedKey } from '../../shared/crypto/seal.ts';
import { CheckpointDownload } from '../../shared/protocol/checkpoint-transfer.ts';
import { MAX_ERROR_TEXT } from '../../shared/protocol/limits.ts';
import { experimentSigningBytes, safeParseMessage, type ExperimentDescription, type SiteInfoMessage } from '../../shared/protocol/messages.ts';
import { isTransferInterrupted } from '../../shared/protocol/transfer.ts';
import { verifyControl, type ControlBody, type SignedControlType } from '../../shared/protocol/signed-control.ts';
import { signBySite, type SiteSignedBody } from '../../shared/protocol/site-signed.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { CoordinatorConnection, DEFAULT_BACKOFF, type Backoff, type ClientLog } from './client-connection.ts';
import { TaskJob, type JobEnvironment, type SecAggPush, type TaskHandler } from './client-task.ts';
import type { WithheldReport } from '../../shared/config/site.ts';
import { withholdSiteInfo } from './withheld-reports.ts';

export type { RoundResult, RoundTask, TaskControl, TaskHandler, TaskPhase } from './client-task.ts';
export { PERMANENT_AUTH_FAILURES, backoffDelay, describeConnectError, type Backoff, type ClientLog, type ClientLogLevel } from './client-connection.ts';

export const AGENT_VERSION = '0.1.0';

export interface CoordinatorClientOptions {
  url: string;
  siteId: string;
  keys: KeyPairs;
  /** The coordinator's public key, pinned: any other coordinator is refused. */
  coordinatorPublicKey: PublicKeys;
  /** PEM file of a CA (or self-signed certificate) to trust for an https:// coordinator. */
  caCertificate?: string;
  log?: ClientLog;
  /** Plaintext bytes per upload chunk, 1–4 MiB (default 2 MiB). */
  chunkBytes?: number;
  backoff?: Backoff;
  /** Instrumentation hook (tests, debugging): receives the socket once, before it connects. */
  instrumentSocket?: (socket: Socket) => void;
  /** Reports this site does not send (site config federation.withhold; withheld-reports.ts). */
  withhold?: readonly WithheldReport[];
  /** Source of the site's DP noise (tests, reproducible simulations); default cryptographically seeded. */
  dpSampler?: JobEnvironment['dpSampler'];
}

/** Names and payloads of the client's events. */
export interface ClientEvents {
  connected: { sessionId: string };
  disconnected: { reason: string };
  /** `permanent`: retrying cannot fix it (not enrolled, wrong pinned key, other protocol version). */
  'auth-failed': { code: string; message: string; permanent: boolean };
  experiment: ExperimentDescription;
  /** The signed experiment description did not verify (or changed experiment): tasks are refused. */
  'experiment-refused': { code: string; message: string };
  task: { round: number; attempt: number; checkpointVersion: number };
  'checkpoint-refused': { round: number; code: string; message: string };
  'task-failed': { round: number; code: string; message: string };
  /** The site told the coordinator it cannot take part in this round attempt (round-decline). */
  declined: { round: number; attempt: number; code: string; reason: string };
  uploaded: { round: number; attempt: number; transferId: string; sha256: string; bytes: number };
  rejected: { round: number; attempt: number; code: string; message: string };
  cancelled: { round: number; code: string; reason: string };
  /** After the last round: the final global model, verified like any checkpoint. */
  complete: { round: number; checkpointVersion: number; checkpointSha256: string; global: NamedWeights };
}
export type ClientEventName = keyof ClientEvents;

export class CoordinatorClient {
  private readonly emitter = new EventEmitter();
  private readonly connection: CoordinatorConnection;
  private readonly log: ClientLog;
  private readonly sharedKey: Uint8Array;
  private handler: TaskHandler | null = null;
  private experiment: ExperimentDescription | null = null;
  private job: TaskJob | null = null;
  /** Older jobs still finishing an upload after a newer task arrived. */
  private readonly finishing = new Set<TaskJob>();
  private siteInfo: SiteInfoMessage | null = null;
  private finalVersion: number | null = null;
  /** Cross-site validation results for the final checkpoint, sent again on every experiment-complete (per model). */
  private readonly finalEvaluations = new Map<string, SiteSignedBody<'final-evaluation'>>();
  private readonly stopController = new AbortController();

  constructor(private readonly opts: CoordinatorClientOptions) {
    this.log = opts.log ?? (() => {});
    this.sharedKey = deriveSharedKey(opts.coordinatorPublicKey.boxPublicKey, opts.keys.boxSecretKey);
    this.connection = new CoordinatorConnection(
      {
        url: opts.url,
        siteId: opts.siteId,
        keys: opts.keys,
        coordinatorPublicKey: opts.coordinatorPublicKey,
        caCertificate: opts.caCertificate,
        backoff: opts.backoff ?? DEFAULT_BACKOFF,
        agentVersion: AGENT_VERSION,
        log: this.log,
        instrumentSocket: opts.instrumentSocket,
      },
      {
        authenticated: (sessionId) => {
          if (this.siteInfo) this.connection.send('site-info', this.siteInfo);
          this.emit('connected', { sessionId });
        },
        disconnected: (reason) => this.emit('disconnected', { reason }),
        authFailed: (e, permanent) => this.emit('auth-failed', { code: e.code, message: e.message, permanent }),
        message: (type, payload, sessionId) => this.onMessage(type, payload, sessionId),
      },
    );
  }

  /** True while authenticated with the coordinator. */
  get connected(): boolean {
    return this.connection.connected;
  }

  /** The verified experiment description, once received. */
  get experimentDescription(): ExperimentDescription | null {
    return this.experiment;
  }

  onTask(handler: TaskHandler): void {
    this.handler = handler;
  }

  /** Hardware and plan for the coordinator's dashboard (sent now if connected, and after every reconnect). */
  setSiteInfo(info: SiteInfoMessage): void {
    const parsed = safeParseMessage('site-info', withholdSiteInfo(info, this.opts.withhold ?? []));
    if (!parsed.ok) throw parsed.error;
    this.siteInfo = parsed.data;
    this.connection.send('site-info', parsed.data);
  }

  start(): void {
    this.connection.start();
  }

  /** Disconnects; a running task's signal is aborted. */
  async stop(): Promise<void> {
    this.stopController.abort();
    const jobs = [...this.finishing, ...(this.job ? [this.job] : [])];
    for (const job of jobs) job.cancel('The site client is stopping.');
    this.connection.stop();
    await Promise.all(jobs.map((job) => job.settled()));
  }

  on<N extends ClientEventName>(name: N, listener: (payload: ClientEvents[N]) => void): this {
    this.emitter.on(name, listener);
    return this;
  }

  once<N extends ClientEventName>(name: N, listener: (payload: ClientEvents[N]) => void): this {
    this.emitter.once(name, listener);
    return this;
  }

  off<N extends ClientEventName>(name: N, listener: (payload: ClientEvents[N]) => void): this {
    this.emitter.off(name, listener);
    return this;
  }

  private emit<N extends ClientEventName>(name: N, payload: ClientEvents[N]): void {
    try {
      this.emitter.emit(name, payload);
    } catch (e) {
      this.log('error', `a '${name}' listener failed`, { error: errorMessage(e) });
    }
  }

  /**
   * Reports the site's test-split scores of the final model (cross-site validation), signed for
   * the session; kept and sent again whenever the coordinator announces the completion again
   * (after a reconnect), so a report lost offline still arrives. False while offline.
   */
  reportFinalEvaluation(body: SiteSignedBody<'final-evaluation'>): boolean {
    this.finalEvaluations.set(body.model, body);
    return this.sendFinalEvaluation(body);
  }

  private sendFinalEvaluation(body: SiteSignedBody<'final-evaluation'>): boolean {
    const session = this.connection.session;
    if (!session) return false;
    return this.connection.send('final-evaluation', signBySite('final-evaluation', body, session, this.opts.keys.signSecretKey));
  }

  /** Tells the coordinator this site cannot take part in a round attempt (signed for the session). */
  private decline(round: number, attempt: number, code: string, reason: string): boolean {
    const session = this.connection.session;
    if (!session) return false; // offline: the coordinator re-sends the task on reconnect and gets the decline then
    const safeCode = /^[a-z0-9][a-z0-9-]{0,63}$/.test(code) ? code : 'cannot-take-part';
    const body = { round, attempt, code: safeCode, reason: reason.slice(0, MAX_ERROR_TEXT) };
    const sent = this.connection.send('round-decline', signBySite('round-decline', body, session, this.opts.keys.signSecretKey));
    if (sent) this.emit('declined', { round, attempt, code: safeCode, reason: body.reason });
    return sent;
  }

  private sendError(code: string, message: string): void {
    const safeCode = /^[a-z0-9][a-z0-9-]{0,63}$/.test(code) ? code : 'error';
    this.connection.send('error', { code: safeCode, message: message.slice(0, MAX_ERROR_TEXT) });
  }

  private onMessage(type: string, payload: unknown, sessionId: string): void {
    try {
      switch (type) {
        case 'experiment':
          return this.onExperiment(payload);
        case 'round-task':
          return this.onRoundTask(this.signedControl('round-task', payload, sessionId));
        case 'round-cancel':
          return this.onCancel(this.signedControl('round-cancel', payload, sessionId));
        case 'experiment-complete':
          return void this.onComplete(this.signedControl('experiment-complete', payload, sessionId));
        // Secure aggregation's pushes go to the job of their round (it may be finishing its upload).
        case 'secagg-roster':
          return this.onSecAgg({ type, body: this.signedControl(type, payload, sessionId) });
        case 'secagg-envelopes':
          return this.onSecAgg({ type, body: this.signedControl(type, payload, sessionId) });
        case 'secagg-unmask':
          return this.onSecAgg({ type, body: this.signedControl(type, payload, sessionId) });
      }
    } catch (e) {
      const err = e instanceof PatchFedError ? e : new PatchFedError('bad-message', errorMessage(e));
      this.log('warn', `refused '${type}' from the coordinator`, { code: err.code, error: err.message });
      this.sendError(err.code, `'${type}' refused: ${err.message}`);
    }
  }

  private onExperiment(payload: unknown): void {
    const m = safeParseMessage('experiment', payload);
    if (!m.ok) throw m.error;
    const { description, signature } = m.data;
    if (!nacl.sign.detached.verify(experimentSigningBytes(description), signature, this.opts.coordinatorPublicKey.signPublicKey)) {
      this.emit('experiment-refused', { code: 'experiment-bad-signature', message: 'The experiment description is not signed by the pinned coordinator key.' });
      throw new PatchFedError('experiment-bad-signature', 'The experiment description is not signed by the pinned coordinator key.');
    }
    if (this.experiment && this.experiment.id !== description.id) {
      // A site takes part in one experiment per client; switching silently would mix models.
      this.emit('experiment-refused', { code: 'experiment-changed', message: `The coordinator now runs experiment '${description.id}', not '${this.experiment.id}'.` });
      throw new PatchFedError('experiment-changed', `This site joined experiment '${this.experiment.id}'; refusing '${description.id}' (restart the site to join it).`);
    }
    const first = this.experiment === null;
    this.experiment = description;
    if (first) this.emit('experiment', description);
  }

  /** Parses a control message and checks the coordinator's signature for this session. */
  private signedControl<T extends SignedControlType>(type: T, payload: unknown, sessionId: string): ControlBody<T> {
    const m = safeParseMessage(type, payload);
    if (!m.ok) throw m.error;
    return verifyControl(type, m.data, sessionId, this.opts.coordinatorPublicKey.signPublicKey);
  }

  private onRoundTask(task: ControlBody<'round-task'>): void {
    if (!this.experiment) throw new PatchFedError('no-experiment', `Round ${task.round} task arrived before a verified experiment description.`);
    if (task.experimentId !== this.experiment.id) {
      throw new PatchFedError('experiment-mismatch', `Round ${task.round} task is for experiment '${task.experimentId}', but this site joined '${this.experiment.id}'.`);
    }
    const job = this.job;
    if (job && job.matches(task)) {
      job.renew(task);
      return;
    }
    if (job?.busy) {
      if (task.round < job.round) throw new PatchFedError('stale-task', `Round ${task.round} task arrived while round ${job.round} is in progress.`);
      // An upload about to be committed may finish (the coordinator decides if it still counts);
      // downloading or training for an outdated round is wasted work.
      if (job.state === 'uploading') this.finishing.add(job);
      else job.cancel(`Superseded by round ${task.round}.`);
      void job.settled().then(() => this.finishing.delete(job));
    }
    const next = new TaskJob(
      {
        siteId: this.opts.siteId,
        keys: this.opts.keys,
        sharedKey: this.sharedKey,
        pinnedCoordinatorSignPublicKey: this.opts.coordinatorPublicKey.signPublicKey,
        chunkBytes: this.opts.chunkBytes,
        withhold: this.opts.withhold ?? [],
        ...(this.opts.dpSampler ? { dpSampler: this.opts.dpSampler } : {}),
        log: this.log,
        ready: (signal) => this.connection.ready(signal),
        sendStatus: (s) => this.connection.send('status', s),
        sendError: (code, message) => this.sendError(code, message),
        decline: (round, attempt, code, reason) => this.decline(round, attempt, code, reason),
        handler: () => this.handler,
        emit: (event, p) => this.emit(event as ClientEventName, p as never),
      },
      task,
      this.experiment,
    );
    this.job = next;
    this.emit('task', { round: task.round, attempt: task.attempt, checkpointVersion: task.checkpoint.version });
    void next.start().catch((e) => this.log('error', `round ${task.round} task crashed`, { error: errorMessage(e) }));
  }

  private onSecAgg(push: SecAggPush): void {
    for (const job of [...this.finishing, ...(this.job ? [this.job] : [])]) if (job.round === push.body.round) job.onSecAgg(push);
  }

  private onCancel(cancel: ControlBody<'round-cancel'>): void {
    const job = this.job;
    if (!job || job.round !== cancel.round || !job.busy) return;
    job.cancel(`Round ${cancel.round} cancelled by the coordinator: ${cancel.reason}`);
    this.emit('cancelled', { round: cancel.round, code: cancel.code, reason: cancel.reason });
  }

  private async onComplete(completion: ControlBody<'experiment-complete'>): Promise<void> {
    const { experimentId, round, checkpoint } = completion;
    if (!this.experiment || experimentId !== this.experiment.id) throw new PatchFedError('experiment-mismatch', `Completion of experiment '${experimentId}' is not for this site's experiment.`);
    if (this.finalVersion === checkpoint.version) {
      for (const body of this.finalEvaluations.values()) if (body.checkpointVersion === checkpoint.version) this.sendFinalEvaluation(body);
      return;
    }
    this.finalVersion = checkpoint.version;
    let global: NamedWeights;
    try {
      const download = new CheckpointDownload({ experimentId, checkpoint, pinnedCoordinatorSignPublicKey: this.opts.coordinatorPublicKey.signPublicKey });
      for (;;) {
        const transport = await this.connection.ready(this.stopController.signal);
        try {
          global = await download.run(transport);
          break;
        } catch (e) {
          if (!isTransferInterrupted(e)) throw e;
        }
      }
    } catch (e) {
      if (this.stopController.signal.aborted) return;
      this.finalVersion = null;
      const err = e instanceof PatchFedError ? e : new PatchFedError('checkpoint-refused', errorMessage(e));
      this.emit('checkpoint-refused', { round, code: err.code, message: err.message });
      this.sendError(err.code, `Final checkpoint v${checkpoint.version} refused: ${err.message}`);
      return;
    }
    this.emit('complete', { round, checkpointVersion: checkpoint.version, checkpointSha256: checkpoint.sha256, global });
  }
}

