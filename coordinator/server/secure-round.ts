/**
 * One round attempt under secure aggregation, on the coordinator (shared/secagg; README "Secure
 * aggregation"). It drives SecAggServerRound over the live round's connections:
 *
 *   round opens ── sites send secagg-keys ──(all selected, or keysTimeout)──► secagg-roster to U1
 *   ── sites send secagg-shares ──(all of U1, or sharesTimeout)──► secagg-envelopes to U2
 *   ── sites upload masked ring vectors (the usual encrypted, signed chunk path; each is added
 *      to the running sum from its spool file and the file deleted) ── the live round closes
 *      (every site resolved, or the deadline) ──► unmask(): secagg-unmask to U3, survivors send
 *      secagg-reveal ──(all of U3, or unmaskTimeout)──► the sum is unmasked and decoded.
 *
 * The coordinator never holds an individual update in the clear: the only vector it keeps is the
 * running sum of masked vectors, then their unmasked sum. A site that misses the key or share
 * step is excluded from the attempt (declined, told by round-cancel); fewer than t sites at any
 * step fails the attempt cleanly with the reason (the last checkpoint stays).
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import type { GlobalValues, RunVisitor } from '../../shared/codec/index.ts';
import { secureScaleBits, type SecureAggregationSpec } from '../../shared/config/aggregation.ts';
import type { SecureAggregationFit } from '../../shared/protocol/messages.ts';
import { fixedPointParams, type FixedPointParams } from '../../shared/secagg/fixed-point.ts';
import { rosterGraph } from '../../shared/secagg/graph.ts';
import type { SecAggContext } from '../../shared/secagg/key-agreement.ts';
import { decodeModelRuns, maskedLayout, vectorLength, type DecodeMode, type MaskedLayout } from '../../shared/secagg/model-vector.ts';
import { forEachRingBlock } from '../../shared/secagg/ring-payload.ts';
import { SecAggServerRound, type UnmaskingOutcome } from '../../shared/secagg/server-round.ts';
import { shareValueFromBytes } from '../../shared/secagg/shamir.ts';
import type { RevealedShare } from '../../shared/secagg/share-policy.ts';
import type { KeyAdvertisement } from '../../shared/secagg/site-round.ts';
import type { Aggregator, CheckpointAttachments, FitInstructions } from '../strategies/index.ts';
import type { EventHub } from './events.ts';
import type { LiveRound } from './live-round.ts';
import type { Log } from './log.ts';
import type { SiteSessions } from './sessions.ts';

/**
 * A site that disconnects during the key or share step stops holding that step open after this
 * long (a blip reconnects sooner); otherwise the step waits for its timeout.
 */
const OFFLINE_GRACE_MS = 5000;

/** Bytes of the nonce at the start of a share envelope's box on the wire (nacl.secretbox). */
const ENVELOPE_NONCE_BYTES = 24;

export interface SecureRoundDeps {
  spec: SecureAggregationSpec;
  /** Enrolled sites: the most whose sum the fixed-point encoding must hold. */
  enrolled: number;
  sessions: () => SiteSessions;
  hub: EventHub;
  log: Log;
}

/** What every selected site's round task carries under secure aggregation. */
export function secureAggregationFit(spec: SecureAggregationSpec, enrolled: number): SecureAggregationFit {
  const maxSites = Math.max(2, enrolled);
  return {
    threshold: spec.threshold,
    maxSites,
    scaleBits: secureScaleBits(spec, maxSites),
    clipRange: spec.clipRange,
    sampleCap: spec.sampleCap,
    ...(spec.neighbours !== undefined ? { neighbours: spec.neighbours } : {}),
  };
}

/** The fixed-point parameters a round's fit instructions name (both ends compute the same). */
export function fitFixedPoint(fit: SecureAggregationFit): FixedPointParams {
  return fixedPointParams({ maxSites: fit.maxSites, clip: fit.clipRange, scale: 2 ** fit.scaleBits });
}

type Step = 'keys' | 'sharing' | 'inputs' | 'unmasking' | 'done' | 'failed';

export class SecureRound {
  readonly fit: SecureAggregationFit;
  readonly params: FixedPointParams;
  readonly layout: MaskedLayout;
  readonly aggregator: SecureAggregator;
  /** Why the attempt failed (the scheduler fails the round with it), or null. */
  failure: string | null = null;
  private readonly server: SecAggServerRound;
  private readonly ctx: SecAggContext;
  private step: Step = 'keys';
  private live: LiveRound | null = null;
  private timer: NodeJS.Timeout | null = null;
  private roster: KeyAdvertisement[] = [];
  private sharers: string[] = [];
  private survivors: string[] = [];
  private revealsDone: (() => void) | null = null;
  /** Selected sites whose connection is down right now. */
  private readonly offline = new Set<string>();

  constructor(
    private readonly deps: SecureRoundDeps,
    ctx: SecAggContext,
    global: GlobalValues,
    /** The strategy's instructions: their localTensors (FedBN) stay out of the masked vector. */
    instructions: Record<string, FitInstructions>,
    /** The strategy's aggregator for the round: it receives the unmasked aggregate. */
    inner: Aggregator,
  ) {
    this.ctx = ctx;
    this.fit = secureAggregationFit(deps.spec, deps.enrolled);
    this.params = fitFixedPoint(this.fit);
    const first = Object.values(instructions)[0];
    this.layout = maskedLayout(global.manifest, first?.localTensors ?? []);
    this.server = new SecAggServerRound(ctx, deps.spec.threshold, vectorLength(this.layout));
    // Sites told to apply DP (distributed: clip + noise share) mask their privatised delta with
    // weight 1 (site-agent/daemon/client-task.ts); the sum is then decoded undivided for the DP
    // aggregator. The strategy gives every site the same dp instructions, or none.
    const dp = first?.dp !== undefined;
    if (Object.values(instructions).some((fit) => (fit.dp !== undefined) !== dp)) {
      throw new PatchFedError('secagg-dp-mixed', `Secure aggregation round ${ctx.round}: some sites are told to apply DP and others not; one masked sum cannot mix the two.`);
    }
    this.aggregator = new SecureAggregator(this.layout, global, this.params, inner, dp ? 'sum' : 'weighted-mean');
  }

  /** The strategy's instructions with secure aggregation's parameters added. */
  instructions(base: Record<string, FitInstructions>): Record<string, FitInstructions> {
    return Object.fromEntries(Object.entries(base).map(([id, fit]) => [id, { ...fit, secureAggregation: this.fit }]));
  }

  /** Bytes of every masked upload of this round (ring-payload.ts). */
  get vectorElements(): number {
    return vectorLength(this.layout);
  }

  /** The round is open and its tasks are out: the key step starts. */
  start(live: LiveRound): void {
    this.live = live;
    this.arm(this.deps.spec.keysTimeoutSeconds, () => this.closeKeys());
  }

  // ---- requests from sites (verified by secure-requests.ts) ------------------------------------

  onKeys(siteId: string, keys: { maskPublicKey: Uint8Array; sharePublicKey: Uint8Array }): void {
    this.expectStep('keys', siteId, 'keys');
    this.expectPending(siteId);
    this.server.addAdvertisement({ siteId, maskPublicKey: keys.maskPublicKey, sharePublicKey: keys.sharePublicKey });
    if (this.pendingSelected().every((id) => this.server.advertisementOf(id))) this.closeKeys();
  }

  onShares(siteId: string, envelopes: readonly { to: string; box: Uint8Array }[]): void {
    this.expectStep('sharing', siteId, 'shares');
    this.server.addEnvelopes(
      siteId,
      envelopes.map((e) => ({ from: siteId, to: e.to, nonce: e.box.subarray(0, ENVELOPE_NONCE_BYTES), ciphertext: e.box.subarray(ENVELOPE_NONCE_BYTES) })),
    );
    if (this.roster.every((a) => this.server.hasShared(a.siteId))) this.closeShares();
  }

  onReveal(siteId: string, reveal: { selfMaskShares: readonly WireShare[]; keyShares: readonly WireShare[] }): void {
    this.expectStep('unmasking', siteId, 'reveal');
    this.server.addUnmaskingResponse(siteId, { selfMaskShares: reveal.selfMaskShares.map(toShare), keyShares: reveal.keyShares.map(toShare) });
    if (this.survivors.every((id) => this.server.hasResponded(id))) this.revealsDone?.();
  }

  /** A site (re)connected: give it the message of the step it is in (pushes sent while it was away are lost). */
  siteOnline(siteId: string): void {
    this.offline.delete(siteId);
    if (this.step === 'sharing' && this.roster.some((a) => a.siteId === siteId) && !this.server.hasShared(siteId)) this.sendRoster(siteId);
    else if (this.step === 'inputs' && this.sharers.includes(siteId) && !this.server.hasInput(siteId)) this.sendEnvelopes(siteId);
    else if (this.step === 'unmasking' && this.survivors.includes(siteId) && !this.server.hasResponded(siteId)) this.sendUnmask(siteId);
  }

  /** A site's connection dropped: if only offline sites are missing from the current step after a grace period, close it. */
  siteOffline(siteId: string): void {
    this.offline.add(siteId);
    if (this.step !== 'keys' && this.step !== 'sharing') return;
    setTimeout(() => {
      if (this.step === 'keys') {
        const missing = this.pendingSelected().filter((id) => !this.server.advertisementOf(id));
        if (missing.length > 0 && missing.every((id) => this.offline.has(id))) this.closeKeys();
      } else if (this.step === 'sharing') {
        const missing = this.roster.map((a) => a.siteId).filter((id) => !this.server.hasShared(id));
        if (missing.length > 0 && missing.every((id) => this.offline.has(id))) this.closeShares();
      }
    }, OFFLINE_GRACE_MS).unref();
  }

  /** The masked vector `siteId` uploaded (validated header and length), added to the sum from its spool file. */
  async addMaskedFile(siteId: string, path: string): Promise<void> {
    if (this.step !== 'inputs') {
      throw new PatchFedError('secagg-phase', `Site '${siteId}' sent its masked update before the share step of round ${this.ctx.round} closed (step '${this.step}').`, { subject: siteId });
    }
    const elements = this.vectorElements;
    await this.server.addMaskedInputBlocks(siteId, (add) => forEachRingBlock(path, elements, `masked update from site '${siteId}'`, add));
  }

  /**
   * After the live round closed: asks the survivors for the shares that remove the masks, waits
   * for them (all, or unmaskTimeout), and unmasks the sum into the aggregator. Failures are kept
   * in `failure`, never thrown: the scheduler fails the attempt with them.
   */
  async unmask(): Promise<void> {
    if (this.step === 'failed' || this.step === 'done') return;
    this.clearTimer();
    if (this.step !== 'inputs') {
      this.fail(new PatchFedError('secagg-incomplete', `the round closed during the ${this.step === 'keys' ? 'key' : 'share'} step of secure aggregation, before any masked update could be sent`));
      return;
    }
    try {
      this.survivors = this.server.closeMaskedInputs();
    } catch (e) {
      this.fail(e);
      return;
    }
    this.step = 'unmasking';
    const answered = new Promise<void>((resolve) => {
      this.revealsDone = resolve;
      this.arm(this.deps.spec.unmaskTimeoutSeconds, resolve);
    });
    for (const id of this.survivors) this.sendUnmask(id);
    await answered;
    this.clearTimer();
    const silent = this.survivors.filter((id) => !this.server.hasResponded(id));
    for (const id of silent) this.dropout(id, `sent its masked update but not its unmasking shares within ${this.deps.spec.unmaskTimeoutSeconds} s; the others' shares stand in for it`);
    let outcome: UnmaskingOutcome;
    try {
      outcome = this.server.finish();
      await this.aggregator.setSum(outcome);
    } catch (e) {
      this.fail(e);
      return;
    }
    this.step = 'done';
    for (const id of outcome.droppedAfterSharing) this.dropout(id, "shared its keys but sent no masked update; the survivors' key shares removed the masks the others had added for it");
    // Dropped after the share step: their pairwise masks were removed with the survivors' key shares.
    this.deps.log('info', 'secure aggregation unmasked the round sum', { round: this.ctx.round, attempt: this.attempt, included: outcome.included, droppedAfterSharing: outcome.droppedAfterSharing, silentAtUnmasking: silent });
  }

  /** The attempt is over (whatever its outcome): stop timers, let go of the sum. */
  dispose(): void {
    this.clearTimer();
    // Late timers and requests of a finished attempt find nothing to do.
    if (this.step !== 'done') this.step = 'failed';
    this.revealsDone?.();
  }

  // ---- steps --------------------------------------------------------------------------------

  private closeKeys(): void {
    if (this.step !== 'keys') return;
    this.clearTimer();
    const advertised = this.pendingSelected()
      .map((id) => this.server.advertisementOf(id))
      .filter((a): a is KeyAdvertisement => a !== undefined);
    try {
      const graph = rosterGraph(this.ctx, advertised, this.fit.neighbours);
      this.roster = this.server.closeAdvertisements(graph).roster;
    } catch (e) {
      this.fail(e);
      return;
    }
    this.step = 'sharing';
    const inRoster = new Set(this.roster.map((a) => a.siteId));
    for (const id of this.pendingSelected()) if (!inRoster.has(id)) this.exclude(id, 'secagg-missed-keys', this.offline.has(id) ? 'went offline before sending its secure-aggregation keys' : `did not send its secure-aggregation keys within ${this.deps.spec.keysTimeoutSeconds} s`);
    for (const a of this.roster) this.sendRoster(a.siteId);
    this.arm(this.deps.spec.sharesTimeoutSeconds, () => this.closeShares());
  }

  private closeShares(): void {
    if (this.step !== 'sharing') return;
    this.clearTimer();
    try {
      this.sharers = this.server.closeSharing();
    } catch (e) {
      this.fail(e);
      return;
    }
    this.step = 'inputs';
    for (const a of this.roster) {
      if (!this.sharers.includes(a.siteId)) this.exclude(a.siteId, 'secagg-missed-shares', this.offline.has(a.siteId) ? 'went offline before sending its secure-aggregation shares' : `did not send its secure-aggregation shares within ${this.deps.spec.sharesTimeoutSeconds} s`);
    }
    for (const id of this.sharers) this.sendEnvelopes(id);
  }

  private sendRoster(siteId: string): void {
    const roster = this.roster.map((a) => ({ siteId: a.siteId, maskPublicKey: a.maskPublicKey, sharePublicKey: a.sharePublicKey }));
    this.deps.sessions().sendSigned(siteId, 'secagg-roster', { round: this.ctx.round, attempt: this.attempt, roster });
  }

  private sendEnvelopes(siteId: string): void {
    const envelopes = this.server.envelopesFor(siteId).map((e) => ({ from: e.from, box: concatBytes(e.nonce, e.ciphertext) }));
    this.deps.sessions().sendSigned(siteId, 'secagg-envelopes', { round: this.ctx.round, attempt: this.attempt, envelopes });
  }

  private sendUnmask(siteId: string): void {
    const request = this.server.unmaskingRequest(siteId);
    this.deps.sessions().sendSigned(siteId, 'secagg-unmask', { round: this.ctx.round, attempt: this.attempt, dropped: request.dropped, survivors: request.survivors });
  }

  /** A selected site can no longer take part in this attempt: it stops holding the round open. */
  private exclude(siteId: string, code: string, reason: string): void {
    const live = this.live;
    if (!live || live.isResolved(siteId)) return;
    const message = `Site '${siteId}' ${reason}; it takes no part in round ${this.ctx.round} (attempt ${this.attempt}).`;
    live.decline(siteId, code, message);
    this.deps.sessions().sendSigned(siteId, 'round-cancel', { round: this.ctx.round, code, reason: message });
    this.dropout(siteId, reason);
  }

  private dropout(siteId: string, reason: string): void {
    this.deps.hub.note(
      'dropout',
      { round: this.ctx.round, attempt: this.attempt, siteId, message: `Secure aggregation, round ${this.ctx.round} (attempt ${this.attempt}): site '${siteId}' ${reason}.` },
      'dropout',
      'warn',
    );
  }

  private fail(e: unknown): void {
    this.clearTimer();
    this.step = 'failed';
    this.failure = `secure aggregation failed: ${e instanceof PatchFedError ? e.message : errorMessage(e)}`;
    if (!(e instanceof PatchFedError)) this.deps.log('error', 'secure aggregation failed', { round: this.ctx.round, error: errorMessage(e), stack: (e as Error)?.stack });
    // Nothing more can come of this attempt: close it now instead of at the deadline.
    this.live?.close('all-resolved');
  }

  private get attempt(): number {
    return this.ctx.attempt ?? 1;
  }

  /** Selected sites not (yet) resolved otherwise (a decline before the key step, say). */
  private pendingSelected(): string[] {
    const live = this.live;
    if (!live) return [];
    return [...live.sites.keys()].filter((id) => !live.declined.has(id) && !live.rejected.has(id)).sort();
  }

  private expectStep(step: Step, siteId: string, what: string): void {
    if (this.step !== step) {
      throw new PatchFedError('secagg-phase', `Secure aggregation round ${this.ctx.round}: '${siteId}' sent its ${what} during the '${this.step}' step; too late or too early.`, { subject: siteId });
    }
  }

  private expectPending(siteId: string): void {
    if (!this.pendingSelected().includes(siteId)) throw new PatchFedError('not-selected', `Site '${siteId}' takes no part in round ${this.ctx.round} (attempt ${this.attempt}).`, { subject: siteId });
  }

  private arm(seconds: number, fire: () => void): void {
    this.clearTimer();
    this.timer = setTimeout(fire, Math.round(seconds * 1000));
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

export interface WireShare {
  owner: string;
  x: number;
  y: Uint8Array;
}

function toShare(w: WireShare): RevealedShare {
  return { owner: w.owner, share: { x: w.x, y: shareValueFromBytes(w.y, `share of '${w.owner}'`) } };
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The round's aggregator under secure aggregation. It takes no plain update (add refuses). Once
 * the sum is unmasked, the decoded aggregate g + Σω·Δ / Σω (g for the local tensors: FedBN) is
 * handed as one update to the strategy's own aggregator, which finishes as it always does — so
 * a server optimiser (FedAdam, FedAvgM, ...) steps on it and saves its state with the checkpoint.
 * For FedAvg/FedProx/FedBN the result is the sample-weighted mean of the sites while every site
 * has at most sampleCap samples (fixed-point.ts).
 *
 * Distributed DP ('sum'): the sites masked their clipped, noised deltas Δ'_i with weight 1, and
 * the strategy's aggregator is DP-FedAvg's (dp-sum.ts, distributed mode: no clipping or noise of
 * its own). It receives g + Σ Δ'_i as one update, so it computes g + Σ Δ'_i / m with its fixed
 * denominator m, then the server optimiser steps and the checkpoint carries the privacy ledger —
 * the same finish as the plain distributed-DP path. Error against the plain path's aggregate of
 * the same Δ'_i, per element: n/(2s) from the fixed point plus the float32 rounding of g + ΣΔ'
 * (2^-24·|g + ΣΔ'|), both divided by m, plus the float32 rounding of the result.
 */
export class SecureAggregator implements Aggregator {
  private included = 0;
  private weight = 0;
  private fed = false;

  constructor(
    private readonly layout: MaskedLayout,
    private readonly global: GlobalValues,
    private readonly params: FixedPointParams,
    /** The strategy's aggregator for this round (strategy.beginAggregation). */
    private readonly inner: Aggregator,
    private readonly mode: DecodeMode = 'weighted-mean',
  ) {}

  get count(): number {
    return this.included;
  }

  /** Σω (capped sample weights), not a sample count: the counts stay inside the masked vectors. */
  get totalSamples(): number {
    return this.weight;
  }

  async add(siteId: string): Promise<void> {
    throw new PatchFedError('secagg-plain-update', `Site '${siteId}' sent a plain update; this round aggregates masked vectors only.`, { subject: siteId });
  }

  /** The unmasked sum of the round (server-round.ts finish()), decoded into the strategy's aggregator. */
  async setSum(outcome: UnmaskingOutcome): Promise<void> {
    const { runs, totalWeight } = decodeModelRuns(outcome.sum, this.layout, this.global, this.params, this.mode);
    // Under DP every site encodes ω = 1 (exactly s in the ring), so Σω is the number of included
    // sites; anything else means a site weighted its update and could move the sum by more than C.
    if (this.mode === 'sum' && totalWeight !== outcome.included.length) {
      throw new PatchFedError(
        'secagg-dp-weight',
        `Secure aggregation with DP: the sum's weight element decodes to ${totalWeight}, but ${outcome.included.length} site(s) are included; every site must mask its clipped update with weight 1.`,
      );
    }
    await this.inner.add('secure-aggregate', runs, 1);
    this.weight = totalWeight;
    this.included = outcome.included.length;
    this.fed = true;
  }

  finish(sink: RunVisitor): void {
    if (!this.fed) throw new PatchFedError('secagg-no-sum', 'Secure aggregation: there is no unmasked sum to aggregate (the unmasking step did not complete).');
    this.inner.finish(sink);
  }

  checkpointAttachments(): CheckpointAttachments {
    return this.inner.checkpointAttachments?.() ?? {};
  }

  dispose(): void {
    this.inner.dispose?.();
  }
}
