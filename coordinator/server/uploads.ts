/**
 * Update uploads from sites into the open round: the protocol's UpdateReceiver (chunked,
 * resumable, signature-checked before decryption) behind a gate that knows about rounds.
 *
 * The gate, before the receiver sees a request:
 *  - refuses uploads when no round is open, from sites not selected, or from sites already
 *    accepted or rejected in this attempt;
 *  - ignores (event + 'stale-update' error) anything belonging to an earlier round or attempt:
 *    each transfer is tagged with the attempt it began in, so a replayed or late transfer can
 *    never count in a later attempt, even though attempts share the round number it is signed for;
 *  - after the receiver answered: a chunk or commit that failed authentication (flipped byte,
 *    wrong key, hash mismatch) rejects the site's update for this attempt.
 * The update's values are validated while its chunks arrive (the one validation path,
 * shared/codec/weights-checks.ts: manifest, finite values, the optional norm bound), so a bad
 * update is refused at its first bad chunk and a committed one is already known good. Commits
 * are serialised: one update at a time is streamed from its spool file into the aggregator, so
 * memory does not grow with the number of sites committing at once.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { StreamingInspection, encodedWeightsSize, fileRuns, updateChecks } from '../../shared/codec/index.ts';
import type { PublicKeys } from '../../shared/crypto/keys.ts';
import { SEAL_OVERHEAD_BYTES } from '../../shared/crypto/seal.ts';
import { safeParseMessage, type Metrics, type WireReply } from '../../shared/protocol/messages.ts';
import { UpdateReceiver, type CompletedUpload, type UploadInspection } from '../../shared/protocol/transfer.ts';
import { runHandler, type HandlerTransport } from '../../shared/protocol/transport.ts';
import type { MetricInput, StateDb } from '../store/index.ts';
import type { EventHub } from './events.ts';
import type { LiveRound } from './live-round.ts';
import type { Log } from './log.ts';
import { ringPayloadBytes, RingPayloadInspection } from '../../shared/secagg/ring-payload.ts';
import { attachSecAggHandlers } from './secure-requests.ts';

/** Receiver errors that mean the update cannot be trusted: the site is rejected for the attempt. */
const TAMPER_CODES = new Set(['chunk-bad-signature', 'chunk-decryption-failed', 'chunk-malformed', 'chunk-wrong-size', 'chunk-wrong-site', 'commit-bad-signature', 'payload-hash-mismatch']);
/** Validation failures of the update's content (shared/codec): the site is rejected for the attempt. */
function isInvalidUpdate(code: string): boolean {
  return code.startsWith('weights-') || code === 'update-norm-exceeded' || code === 'update-wrong-size';
}
const UPLOAD_TYPES = new Set(['update-begin', 'update-resume', 'update-chunk', 'update-commit']);
/** Transfer tags kept (oldest dropped first); one per upload, so this spans many rounds. */
const MAX_TAGS = 100_000;

export interface UploadContext {
  live(): LiveRound | null;
  db: StateDb;
  hub: EventHub;
  log: Log;
  /** L2 bound on (update − global); 0 = off. */
  updateNormBound: number;
  /** Largest sample count a site may claim (its weight in the mean). */
  maxSamplesPerSite: number;
  /** Per-site limits declared at enrolment (lower than maxSamplesPerSite). */
  siteMaxSamples: (siteId: string) => number | undefined;
  /** ||update − global|| ≤ this × ||global|| (0 = off). */
  maxUpdateNormRatio: number;
}

export class UploadService {
  readonly receiver: UpdateReceiver;
  private readonly tags = new Map<string, number>();
  /** Commits run one after another (see the module comment). */
  private commits: Promise<unknown> = Promise.resolve();

  constructor(
    directory: string,
    coordinatorBoxSecretKey: Uint8Array,
    private readonly ctx: UploadContext,
  ) {
    this.receiver = new UpdateReceiver({
      directory,
      coordinatorBoxSecretKey,
      onInternalError: (e) => ctx.log('error', 'update receiver failed', { error: errorMessage(e) }),
    });
  }

  /** Serves uploads on one authenticated connection. */
  attach(router: HandlerTransport, peer: { siteId: string; siteKeys: PublicKeys }): () => void {
    // Secure aggregation's key, share and reveal requests come with the uploads they lead to.
    const detachSecAgg = attachSecAggHandlers(router, peer, () => this.ctx.live());
    const detachUploads = this.receiver.attach(this.gated(router, peer.siteId), {
      siteId: peer.siteId,
      siteKeys: peer.siteKeys,
      currentRound: () => this.ctx.live()?.round ?? 0,
      inspect: (upload) => this.inspection(peer.siteId, upload.round),
      onComplete: (upload) => this.serialised(() => this.complete(upload)),
    });
    return () => {
      detachSecAgg();
      detachUploads();
    };
  }

  close(): Promise<void> {
    return this.receiver.close();
  }

  /** Rejects `siteId`'s update in `live` (once), durably and visibly. */
  reject(live: LiveRound, siteId: string, code: string, reason: string): void {
    if (live.isResolved(siteId) || live.closed) return;
    try {
      this.ctx.db.recordSiteUpdate({ roundId: live.record.id, siteId, status: 'rejected', reason: `${code}: ${reason}`.slice(0, 2000) });
    } catch (e) {
      this.ctx.log('error', 'could not record a rejected update', { siteId, error: errorMessage(e) });
    }
    live.reject(siteId, code, reason);
    this.ctx.hub.note(
      'update-rejected',
      { round: live.round, attempt: live.attempt, siteId, code, message: `Update from site '${siteId}' rejected in round ${live.round} (attempt ${live.attempt}): ${reason}` },
      'reject',
      'warn',
    );
  }

  private ignore(siteId: string, code: string, message: string, round?: number): PatchFedError {
    this.ctx.hub.note('update-ignored', { siteId, code, round, message: `Ignored from site '${siteId}': ${message}` }, 'reject', 'warn');
    return new PatchFedError(code, message, { subject: siteId });
  }

  private key(siteId: string, transferId: string): string {
    return `${siteId}\u0000${transferId}`;
  }

  private gated(router: HandlerTransport, siteId: string): HandlerTransport {
    return {
      handle: (type, handler) => {
        if (!UPLOAD_TYPES.has(type)) return router.handle(type, handler);
        return router.handle(type, async (payload) => {
          const live = this.before(siteId, type, payload);
          // The receiver refuses by throwing; turn that into the reply here so the gate sees
          // refusals too (a tampered chunk must reject the site's update, not just this message).
          const reply = await runHandler(handler, payload, (e) => this.ctx.log('error', `upload handler of '${type}' failed`, { siteId, error: errorMessage(e), stack: (e as Error)?.stack }));
          if (live) this.after(live, siteId, type, payload, reply);
          return reply;
        });
      },
    };
  }

  /** Throws the refusal, or returns the round the request belongs to. */
  private before(siteId: string, type: string, payload: unknown): LiveRound | null {
    const live = this.ctx.live();
    if (type === 'update-begin') {
      const m = safeParseMessage('update-begin', payload);
      if (!m.ok) return null; // the receiver reports the schema error
      if (!live || live.closed) throw new PatchFedError('no-round', `No round is open; site '${siteId}' cannot upload for round ${m.data.round} now.`, { subject: siteId });
      if (m.data.round !== live.round) {
        throw this.ignore(siteId, 'stale-update', `an upload for round ${m.data.round} arrived during round ${live.round} (late or replayed).`, m.data.round);
      }
      this.checkSite(live, siteId);
      const key = this.key(siteId, m.data.transferId);
      const tag = this.tags.get(key);
      if (tag !== undefined && tag !== live.record.id) {
        throw this.ignore(siteId, 'stale-update', `transfer ${m.data.transferId} began in an earlier attempt of round ${live.round}; start a new transfer.`, live.round);
      }
      if (m.data.chunkBytes > live.upload.chunkBytes) {
        throw new PatchFedError('chunk-too-large', `Site '${siteId}' wants ${m.data.chunkBytes}-byte chunks; this round's task allows ${live.upload.chunkBytes}.`, { subject: siteId });
      }
      // Under secure aggregation the payload is the masked ring vector, never weights.
      const expected = live.secure ? ringPayloadBytes(live.secure.vectorElements) : encodedWeightsSize(live.global.manifest);
      if (m.data.totalBytes !== expected || (m.data.payload === 'secagg-ring') !== (live.secure !== null)) {
        const what = live.secure ? `a masked vector of this round is exactly ${expected} bytes (payload 'secagg-ring')` : `this experiment's model encodes to exactly ${expected} bytes`;
        const reason = `announced a ${m.data.totalBytes}-byte ${m.data.payload ?? 'weights'} update; ${what}.`;
        this.reject(live, siteId, 'update-wrong-size', reason);
        throw new PatchFedError('update-wrong-size', `Site '${siteId}' ${reason}`, { subject: siteId });
      }
      if (tag === undefined) this.tag(key, live.record.id);
      return live;
    }
    const m = safeParseMessage(type as 'update-resume' | 'update-chunk' | 'update-commit', payload);
    if (!m.ok) return null;
    const tag = this.tags.get(this.key(siteId, m.data.transferId));
    if (tag === undefined) return null; // never begun here: the receiver answers unknown-transfer
    if (!live || live.closed || tag !== live.record.id) {
      throw this.ignore(siteId, 'stale-update', `transfer ${m.data.transferId} belongs to an earlier round or attempt${live && !live.closed ? ` (now round ${live.round}, attempt ${live.attempt})` : ''}.`, live?.round);
    }
    this.checkSite(live, siteId);
    return live;
  }

  private checkSite(live: LiveRound, siteId: string): void {
    if (!live.isSelected(siteId)) throw new PatchFedError('not-selected', `Site '${siteId}' is not selected for round ${live.round} (attempt ${live.attempt}).`, { subject: siteId });
    if (live.accepted.has(siteId)) throw new PatchFedError('already-contributed', `Site '${siteId}' already has an accepted update in round ${live.round} (attempt ${live.attempt}).`, { subject: siteId });
    const rejected = live.rejected.get(siteId);
    if (rejected) throw new PatchFedError('update-rejected', `Site '${siteId}''s update for round ${live.round} (attempt ${live.attempt}) was rejected (${rejected.code}); no further upload is taken this attempt.`, { subject: siteId });
  }

  private after(live: LiveRound, siteId: string, type: string, payload: unknown, reply: WireReply): void {
    const site = live.sites.get(siteId);
    if (reply.type === 'error') {
      const { code, message } = reply.payload as { code: string; message: string };
      if (TAMPER_CODES.has(code) || isInvalidUpdate(code)) this.reject(live, siteId, code, message);
      else if (code === 'chunk-wrong-round') this.ignore(siteId, 'stale-update', message, live.round);
      return;
    }
    if (!site) return;
    if (type === 'update-begin' && reply.type === 'transfer-status') {
      const m = safeParseMessage('update-begin', payload);
      if (m.ok) {
        site.state = 'uploading';
        site.bytesTotal = m.data.totalBytes;
        const next = (reply.payload as { nextIndex: number }).nextIndex;
        site.bytesTransferred = Math.min(m.data.totalBytes, next * m.data.chunkBytes);
        site.stepsDone = site.stepsTotal;
      }
    } else if (type === 'update-chunk' && reply.type === 'chunk-ack') {
      const m = safeParseMessage('update-chunk', payload);
      if (m.ok) {
        const plain = m.data.ciphertext.length - SEAL_OVERHEAD_BYTES;
        site.bytesTransferred = Math.min(site.bytesTotal || Infinity, site.bytesTransferred + plain);
        live.bytesUp += m.data.ciphertext.length;
      }
    }
    this.ctx.hub.changed();
  }

  private tag(key: string, roundId: number): void {
    if (this.tags.size >= MAX_TAGS) this.tags.delete(this.tags.keys().next().value!);
    this.tags.set(key, roundId);
  }

  /** The validation path for one upload of the open round, run as its chunks arrive. */
  private inspection(siteId: string, round: number): UploadInspection {
    const live = this.ctx.live();
    if (!live || live.closed || live.round !== round) throw new PatchFedError('no-round', `No round ${round} is open for site '${siteId}' to upload to.`, { subject: siteId });
    const source = `update from site '${siteId}' (round ${round})`;
    // A masked vector is uniformly random by design: only its header and exact length can be checked.
    if (live.secure) return new RingPayloadInspection(live.secure.vectorElements, source);
    const manifest = live.global.manifest;
    const checks = updateChecks({
      expectedManifest: manifest,
      reference: live.global.values,
      normBound: this.ctx.updateNormBound,
      maxNormRatio: this.ctx.maxUpdateNormRatio,
      referenceNorm: live.global.l2Norm,
      source,
    });
    return new StreamingInspection(checks, { expectedManifest: manifest, maxBytes: encodedWeightsSize(manifest), source });
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.commits.then(fn, fn);
    this.commits = run.catch(() => undefined);
    return run;
  }

  private async complete(upload: CompletedUpload): Promise<void> {
    const { siteId } = upload;
    const live = this.ctx.live();
    const tag = this.tags.get(this.key(siteId, upload.transferId));
    if (!live || live.closed || tag !== live.record.id || upload.round !== live.round) {
      throw this.ignore(siteId, 'stale-update', `update ${upload.transferId} for round ${upload.round} completed after its round attempt closed.`, upload.round);
    }
    const manifest = live.global.manifest;
    const source = `update from site '${siteId}' (round ${live.round})`;
    try {
      if (live.secure) {
        // The sample weight travels inside the masked vector; the commit's count is not used.
        await live.secure.addMaskedFile(siteId, upload.path);
        if (live.closed || this.ctx.live() !== live) {
          throw this.ignore(siteId, 'stale-update', `update ${upload.transferId} for round ${upload.round} completed after its round attempt closed.`, upload.round);
        }
        this.recordAccepted(live, upload);
        return;
      }
      const declared = this.ctx.siteMaxSamples(siteId);
      const limit = Math.min(this.ctx.maxSamplesPerSite, declared ?? Infinity);
      if (upload.samples > limit) {
        const which = declared !== undefined && declared <= this.ctx.maxSamplesPerSite ? `the ${declared} it declared at enrolment (sites[].maxSamples)` : `the limit of ${limit} (experiment.maxSamplesPerSite)`;
        throw new PatchFedError('invalid-update', `${source} rejected: it claims ${upload.samples} training samples, more than ${which}.`, { subject: siteId });
      }
      // Already validated while it arrived: one pass from the spool file into the running sum.
      await live.aggregator.add(siteId, fileRuns(upload.path, manifest, source), upload.samples);
    } catch (e) {
      if (e instanceof PatchFedError && e.code === 'stale-update') throw e;
      const err = e instanceof PatchFedError ? e : new PatchFedError('update-unreadable', `${source} could not be processed: ${errorMessage(e)}`, { subject: siteId, cause: e });
      if (!(e instanceof PatchFedError)) this.ctx.log('error', 'processing an update failed', { siteId, error: errorMessage(e), stack: (e as Error)?.stack });
      this.reject(live, siteId, err.code, err.message);
      throw err;
    }
    // The deadline may have closed the attempt while the update was being folded in (the fold
    // reads the spool file): it is then a late update like any other, not an accepted one.
    if (live.closed || this.ctx.live() !== live) {
      throw this.ignore(siteId, 'stale-update', `update ${upload.transferId} for round ${upload.round} completed after its round attempt closed.`, upload.round);
    }
    this.recordAccepted(live, upload);
  }

  private recordAccepted(live: LiveRound, upload: CompletedUpload): void {
    const { siteId, metrics } = upload;
    const { db } = this.ctx;
    // Secure aggregation: no sample count is known (it is masked), so none is recorded.
    const samples = live.secure ? undefined : upload.samples;
    try {
      db.recordSiteUpdate({
        roundId: live.record.id,
        siteId,
        status: 'accepted',
        ...(samples !== undefined ? { numSamples: samples } : {}),
        bytes: upload.totalBytes,
        metrics: { ...metrics },
      });
      db.recordMetrics(live.record.id, siteId, siteMetrics(metrics, samples, upload.totalBytes));
      db.upsertSite({ id: siteId, fingerprint: db.getSite(siteId)!.fingerprint, backend: metrics.backend, plannedPatch: metrics.patch, plannedBatch: metrics.batch });
    } catch (e) {
      this.ctx.log('error', 'could not record an accepted update', { siteId, error: errorMessage(e) });
    }
    live.accept(siteId, { samples: samples ?? 0, bytes: upload.totalBytes, metrics });
    this.ctx.hub.note(
      'update-accepted',
      {
        round: live.round,
        attempt: live.attempt,
        siteId,
        samples: samples ?? 0,
        bytes: upload.totalBytes,
        message: `Update from site '${siteId}' accepted for round ${live.round} (${samples !== undefined ? `${samples} samples` : 'masked for secure aggregation'}, ${upload.totalBytes} bytes).`,
      },
      null,
    );
  }
}

export function siteMetrics(m: Metrics, samples: number | undefined, bytes: number): MetricInput[] {
  // A site may withhold any metric (site config federation.withhold): record what it sent.
  const out: MetricInput[] = [
    ...(m.loss !== undefined ? [{ kind: 'loss' as const, value: m.loss }] : []),
    ...(m.timeMs !== undefined ? [{ kind: 'time_ms' as const, value: m.timeMs }] : []),
    ...(m.peakMemoryBytes !== undefined ? [{ kind: 'peak_memory_bytes' as const, value: m.peakMemoryBytes }] : []),
    ...(samples !== undefined ? [{ kind: 'samples' as const, value: samples }] : []),
    { kind: 'bytes', value: bytes },
  ];
  for (const [label, value] of Object.entries(m.dice ?? {})) out.push({ kind: 'dice', label, value });
  return out;
}
