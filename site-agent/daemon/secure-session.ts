/**
 * A site's side of one secure-aggregation round attempt over the federation connection
 * (shared/secagg/site-round.ts does the math; README "Secure aggregation"):
 *
 *   start()            fresh X25519 keys → signed secagg-keys (sent as soon as the task arrives,
 *                      so the key and share steps run while the site downloads and trains)
 *   onRoster()         ← signed secagg-roster: Shamir shares of the self-mask seed and the mask
 *                      secret key, sealed per neighbour → signed secagg-shares
 *   onEnvelopes()      ← signed secagg-envelopes: open the shares addressed to this site
 *   maskedPayload()    after training: ω·Δ (capped sample weight ω, FedBN norm tensors left out)
 *                      in fixed point, plus pairwise and self masks, as the ring payload to upload;
 *                      under distributed DP the clipped, noised Δ' with ω = 1 instead
 *   onUnmask()         ← signed secagg-unmask: the shares share-policy.ts allows → signed
 *                      secagg-reveal, or a refusal (a request for both shares of one peer, ...)
 *
 * Every request is signed with the site's enrolled key and bound to experiment, round and
 * attempt (wire-signing.ts); every coordinator push arrives as a signed control message bound to
 * the session (the client checks it before it gets here).
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { encodeMessage, parseReply, type Message, type SecureAggregationFit } from '../../shared/protocol/messages.ts';
import type { ControlBody } from '../../shared/protocol/signed-control.ts';
import type { RequestTransport } from '../../shared/protocol/transport.ts';
import { cappedWeight, fixedPointParams } from '../../shared/secagg/fixed-point.ts';
import { rosterGraph } from '../../shared/secagg/graph.ts';
import { encodeModelUpdate, maskedLayout, vectorLength } from '../../shared/secagg/model-vector.ts';
import { allocateRingPayload, sealRingPayload } from '../../shared/secagg/ring-payload.ts';
import { shareValueToBytes } from '../../shared/secagg/shamir.ts';
import { SecAggSiteRound, type KeyAdvertisement } from '../../shared/secagg/site-round.ts';
import { signSecAggRequest, type SecAggRequestBody, type SecAggSiteRequest } from '../../shared/secagg/wire-signing.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import type { ClientLog } from './client-connection.ts';

const REQUEST_TIMEOUT_MS = 60_000;

export interface SecureSessionEnv {
  siteId: string;
  experimentId: string;
  signSecretKey: Uint8Array;
  log: ClientLog;
  ready(signal: AbortSignal): Promise<RequestTransport>;
  /** Tells the coordinator why this site stopped (a site error event). */
  sendError(code: string, message: string): void;
}

/** How the masked update is weighted: by its capped sample count (FedAvg), or 1 (DP-FedAvg). */
export type MaskWeighting = { samples: number } | 'unit';

export interface MaskedUpload {
  /** Header + masked ring elements (ring-payload.ts), ready for the chunked upload. */
  payload: Uint8Array;
  /** Elements that were outside the clip range and were clamped (0 normally). */
  clamped: number;
}

export class SecureSession {
  private readonly site: SecAggSiteRound;
  private readonly envelopesIn: Promise<void>;
  private resolveEnvelopes!: () => void;
  private rejectEnvelopes!: (e: unknown) => void;
  private failed: PatchFedError | null = null;
  /** The roster this attempt's shares were made for. */
  private sharedFor: readonly KeyAdvertisement[] | null = null;

  constructor(
    private readonly env: SecureSessionEnv,
    readonly round: number,
    readonly attempt: number,
    readonly fit: SecureAggregationFit,
    private readonly signal: AbortSignal,
  ) {
    this.site = new SecAggSiteRound(env.siteId, { experiment: env.experimentId, round, attempt }, fit.threshold);
    this.envelopesIn = new Promise((resolve, reject) => {
      this.resolveEnvelopes = resolve;
      this.rejectEnvelopes = reject;
    });
    this.envelopesIn.catch(() => undefined); // observed by maskedPayload
  }

  /** Step 0: advertise this attempt's fresh public keys. */
  async start(): Promise<void> {
    const ad = this.site.advertiseKeys();
    await this.guard(() => this.send('secagg-keys', { round: this.round, attempt: this.attempt, maskPublicKey: ad.maskPublicKey, sharePublicKey: ad.sharePublicKey }));
  }

  /** Step 1: the roster of U1 arrived; send one sealed share bundle per neighbour. */
  onRoster(body: ControlBody<'secagg-roster'>): void {
    if (!this.mine(body)) return;
    void this.guard(async () => {
      if (this.sharedFor) {
        // The coordinator re-sends the roster to a site that reconnects before it has that site's
        // shares. Ours are already on their way: send() retries them on every new connection
        // until acknowledged, so the repeat needs nothing more. A different roster within one
        // attempt is refused: one consistent roster is what the Shamir shares are made for.
        if (!sameRoster(this.sharedFor, body.roster)) {
          throw new PatchFedError('secagg-roster', `Secure aggregation: round ${this.round} attempt ${this.attempt} received a second roster that differs from the first.`);
        }
        return;
      }
      const graph = rosterGraph({ experiment: this.env.experimentId, round: this.round, attempt: this.attempt }, body.roster, this.fit.neighbours);
      const envelopes = this.site.shareKeys(body.roster, graph).map((e) => ({ to: e.to, box: concat(e.nonce, e.ciphertext) }));
      this.sharedFor = body.roster;
      await this.send('secagg-shares', { round: this.round, attempt: this.attempt, envelopes });
    });
  }

  /** Step 1 → 2: the shares addressed to this site from U2. */
  onEnvelopes(body: ControlBody<'secagg-envelopes'>): void {
    if (!this.mine(body)) return;
    void this.guard(async () => {
      const nonceBytes = 24;
      this.site.receiveShares(body.envelopes.map((e) => ({ from: e.from, to: this.env.siteId, nonce: e.box.subarray(0, nonceBytes), ciphertext: e.box.subarray(nonceBytes) })));
      this.resolveEnvelopes();
    });
  }

  /**
   * Step 2: the masked upload of `update` against the round's `global`. Waits until the share
   * step is done (the masks need U2). With `{ samples }` the count only enters as the capped
   * weight ω inside the vector; nothing of it is sent in the clear. `'unit'` (DP-FedAvg: `update`
   * is already clipped and noised) masks it with ω = 1, so the coordinator decodes the plain sum.
   */
  async maskedPayload(update: NamedWeights, global: NamedWeights, weighting: MaskWeighting, localTensors: readonly string[]): Promise<MaskedUpload> {
    await Promise.race([this.envelopesIn, aborted(this.signal)]);
    const params = fixedPointParams({ maxSites: this.fit.maxSites, clip: this.fit.clipRange, scale: 2 ** this.fit.scaleBits });
    const layout = maskedLayout(global.manifest, localTensors);
    const weight = weighting === 'unit' ? 1 : cappedWeight(weighting.samples, this.fit.sampleCap);
    const encoded = encodeModelUpdate(update, global, layout, params, weight);
    const payload = allocateRingPayload(vectorLength(layout));
    payload.words.set(encoded.vector);
    this.site.maskedInput(payload.words, { inPlace: true });
    if (encoded.clamped > 0) this.env.log('warn', `secure aggregation clamped ${encoded.clamped} update value(s) to ±${this.fit.clipRange}`, { round: this.round });
    return { payload: sealRingPayload(payload), clamped: encoded.clamped };
  }

  /** Step 3: reveal what the policy allows, or refuse (and say why, in the site log and to the coordinator). */
  onUnmask(body: ControlBody<'secagg-unmask'>): void {
    if (!this.mine(body)) return;
    const decision = this.site.unmaskingResponse({ dropped: [...body.dropped], survivors: [...body.survivors] });
    if (!decision.ok) {
      this.env.log('error', `secure aggregation: ${decision.reason}`, { round: this.round, refusal: decision.refusal });
      this.env.sendError('secagg-refused', decision.reason);
      return;
    }
    const wire = (shares: typeof decision.keyShares) => shares.map((r) => ({ owner: r.owner, x: r.share.x, y: shareValueToBytes(r.share.y) }));
    void this.guard(() => this.send('secagg-reveal', { round: this.round, attempt: this.attempt, selfMaskShares: wire(decision.selfMaskShares), keyShares: wire(decision.keyShares) }));
  }

  /** A newer attempt replaced this one: whoever waits for its shares stops waiting. */
  supersede(): void {
    this.failed ??= new PatchFedError('secagg-superseded', `Round ${this.round} attempt ${this.attempt} was replaced by a newer attempt.`);
    this.rejectEnvelopes(this.failed);
  }

  private mine(body: { round: number; attempt: number }): boolean {
    return body.round === this.round && body.attempt === this.attempt && this.failed === null;
  }

  /** Runs a step; a failure ends this site's part in the attempt (logged, and the upload waits no more). */
  private async guard(step: () => Promise<void> | void): Promise<void> {
    try {
      await step();
    } catch (e) {
      if (this.signal.aborted) return;
      const err = e instanceof PatchFedError ? e : new PatchFedError('secagg-failed', errorMessage(e));
      this.failed = err;
      this.env.log('warn', `secure aggregation, round ${this.round} attempt ${this.attempt}: ${err.message}`, { code: err.code });
      this.rejectEnvelopes(err);
    }
  }

  /** Sends a signed request, waiting for a connection and retrying when one drops. */
  private async send<T extends SecAggSiteRequest>(type: T, body: SecAggRequestBody<T>): Promise<void> {
    const message = signSecAggRequest(type, body, { experimentId: this.env.experimentId, siteId: this.env.siteId }, this.env.signSecretKey);
    for (;;) {
      const transport = await this.env.ready(this.signal);
      let raw: unknown;
      try {
        raw = await transport.request(type, encodeMessage(type, message), REQUEST_TIMEOUT_MS);
      } catch {
        if (this.signal.aborted) throw new PatchFedError('task-cancelled', `Round ${this.round} was cancelled.`);
        continue; // the connection dropped: send again on the next one (the coordinator refuses a duplicate)
      }
      const reply = parseReply(type, raw);
      if (reply.type === 'error') {
        const { code, message: reason } = reply.payload as Message<'error'>;
        throw new PatchFedError(code, `The coordinator refused '${type}': ${reason}`);
      }
      return;
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Rejects when `signal` aborts (never resolves otherwise). */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** Same sites with the same public keys, in the same order. */
function sameRoster(a: readonly KeyAdvertisement[], b: readonly KeyAdvertisement[]): boolean {
  const bytesEqual = (x: Uint8Array, y: Uint8Array) => x.length === y.length && x.every((v, i) => v === y[i]);
  return a.length === b.length && a.every((ad, i) => {
    const other = b[i];
    return other !== undefined && ad.siteId === other.siteId && bytesEqual(ad.maskPublicKey, other.maskPublicKey) && bytesEqual(ad.sharePublicKey, other.sharePublicKey);
  });
}
