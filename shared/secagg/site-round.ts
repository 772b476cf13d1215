/**
 * One site's side of one secure-aggregation round, the four steps of Bonawitz et al. 2017 (§4,
 * Fig. 4, semi-honest variant) on the masking graph of Bell et al. 2020:
 *
 *   0 advertiseKeys   fresh mask and share key pairs             → coordinator (public keys)
 *   1 shareKeys       Shamir shares of b_u and of the mask secret key, one encrypted envelope per
 *                     neighbour                                  → coordinator routes them
 *     receiveShares   open the envelopes addressed to this site (their senders form U2)
 *   2 maskedInput     y_u = x_u + self-mask + pairwise masks with the neighbours in U2
 *   3 unmaskingResponse  shares for the coordinator's request, under share-policy.ts's rules
 *
 * Secrets (secret keys, b_u, shares) never leave this object except as envelopes and as the
 * shares the policy allows. No I/O: the caller carries the messages.
 */
import { PatchFedError } from '../errors.ts';
import { bytesEqual } from '../crypto/encoding.ts';
import { generateX25519KeyPair, newSelfMaskSeed, pairwiseMaskSeed, X25519_KEY_BYTES, type SecAggContext, type X25519KeyPair } from './key-agreement.ts';
import { maskInPlace, maskUpdate, pairwiseSign, type SignedSeed } from './masking.ts';
import { neighboursOf, type MaskingGraph } from './graph.ts';
import { openShares, sealShares, type ShareEnvelope, type SharePair } from './share-envelope.ts';
import { initialRevealState, sharesToReveal, type RevealDecision, type RevealState } from './share-policy.ts';
import { splitSecret } from './shamir.ts';

/** A site's public keys for one round. */
export interface KeyAdvertisement {
  siteId: string;
  maskPublicKey: Uint8Array;
  sharePublicKey: Uint8Array;
}

/** The coordinator's request in the unmasking step, restricted to the site's neighbourhood. */
export interface UnmaskingRequest {
  dropped: string[];
  survivors: string[];
}

/** x-coordinate of every site of the round: its position in the id-sorted roster, from 1. */
export function participantIndices(roster: readonly KeyAdvertisement[]): Map<string, number> {
  const ids = roster.map((a) => a.siteId).sort();
  return new Map(ids.map((id, i) => [id, i + 1]));
}

/** Checks a roster once: distinct ids, 32-byte keys, all keys distinct (a replayed key is refused). */
export function checkRoster(roster: readonly KeyAdvertisement[], threshold: number): Map<string, KeyAdvertisement> {
  const byId = new Map<string, KeyAdvertisement>();
  const keys = new Set<string>();
  for (const a of roster) {
    if (byId.has(a.siteId)) throw new PatchFedError('secagg-roster', `Secure aggregation: site '${a.siteId}' advertised keys twice.`, { subject: a.siteId });
    for (const [what, key] of [['mask', a.maskPublicKey], ['share', a.sharePublicKey]] as const) {
      if (!(key instanceof Uint8Array) || key.length !== X25519_KEY_BYTES) {
        throw new PatchFedError('secagg-roster', `Secure aggregation: the ${what} public key of '${a.siteId}' must be ${X25519_KEY_BYTES} bytes.`, { subject: a.siteId });
      }
      const hex = Buffer.from(key).toString('hex');
      if (keys.has(hex)) throw new PatchFedError('secagg-roster', `Secure aggregation: the ${what} public key of '${a.siteId}' is used twice in the round.`, { subject: a.siteId });
      keys.add(hex);
    }
    byId.set(a.siteId, a);
  }
  if (!(Number.isSafeInteger(threshold) && threshold >= 2)) {
    throw new PatchFedError('secagg-threshold', `Secure aggregation: the threshold must be an integer ≥ 2, got ${String(threshold)}.`);
  }
  if (byId.size < threshold) {
    throw new PatchFedError('secagg-threshold', `Secure aggregation: ${byId.size} site(s) advertised keys, the threshold is ${threshold}; the round cannot run.`);
  }
  return byId;
}

type Phase = 'created' | 'advertised' | 'shared' | 'received' | 'masked';

export class SecAggSiteRound {
  readonly siteId: string;
  private readonly ctx: SecAggContext;
  private readonly threshold: number;
  private phase: Phase = 'created';
  private maskKeyPair: X25519KeyPair | null = null;
  private shareKeyPair: X25519KeyPair | null = null;
  private selfSeed: Uint8Array | null = null;
  private roster = new Map<string, KeyAdvertisement>();
  private neighbours: readonly string[] = [];
  private ownX = 0;
  private ownShares: SharePair | null = null;
  private held = new Map<string, SharePair>();
  private reveal: RevealState | null = null;

  constructor(siteId: string, ctx: SecAggContext, threshold: number) {
    this.siteId = siteId;
    this.ctx = ctx;
    this.threshold = threshold;
  }

  private expect(phase: Phase, step: string): void {
    if (this.phase !== phase) throw new PatchFedError('secagg-phase', `Secure aggregation: site '${this.siteId}' cannot ${step} now (step '${this.phase}').`, { subject: this.siteId });
  }

  /** Step 0: fresh key pairs for this round. */
  advertiseKeys(): KeyAdvertisement {
    this.expect('created', 'advertise keys');
    const maskKeys = generateX25519KeyPair();
    const shareKeys = generateX25519KeyPair();
    this.maskKeyPair = maskKeys;
    this.shareKeyPair = shareKeys;
    this.phase = 'advertised';
    return { siteId: this.siteId, maskPublicKey: maskKeys.publicKey, sharePublicKey: shareKeys.publicKey };
  }

  /** Step 1: shares of b_u and of the mask secret key, one envelope per neighbour (own share kept). */
  shareKeys(roster: readonly KeyAdvertisement[], graph: MaskingGraph): ShareEnvelope[] {
    this.expect('advertised', 'share keys');
    const { maskKeys, shareKeys } = this.keys();
    this.roster = checkRoster(roster, this.threshold);
    const own = this.roster.get(this.siteId);
    if (!own || !bytesEqual(own.maskPublicKey, maskKeys.publicKey) || !bytesEqual(own.sharePublicKey, shareKeys.publicKey)) {
      throw new PatchFedError('secagg-roster', `Secure aggregation: the roster does not carry site '${this.siteId}''s own keys.`, { subject: this.siteId });
    }
    this.neighbours = neighboursOf(graph, this.siteId);
    for (const id of this.neighbours) {
      if (!this.roster.has(id)) throw new PatchFedError('secagg-roster', `Secure aggregation: neighbour '${id}' of '${this.siteId}' has no advertised keys.`, { subject: id });
    }
    if (this.neighbours.length + 1 < this.threshold) {
      throw new PatchFedError('secagg-threshold', `Secure aggregation: site '${this.siteId}' has ${this.neighbours.length} neighbour(s), too few for threshold ${this.threshold}.`, { subject: this.siteId });
    }
    const indices = participantIndices(roster);
    const holders = [this.siteId, ...this.neighbours];
    const xs = holders.map((id) => indices.get(id) ?? 0);
    this.ownX = indices.get(this.siteId) ?? 0;
    this.selfSeed = newSelfMaskSeed();
    const selfShares = splitSecret(this.selfSeed, xs, this.threshold);
    const keyShares = splitSecret(maskKeys.secretKey, xs, this.threshold);
    const envelopes: ShareEnvelope[] = [];
    holders.forEach((id, i) => {
      const pair: SharePair = { selfMaskShare: selfShares[i] ?? { x: 0, y: 0n }, keyShare: keyShares[i] ?? { x: 0, y: 0n } };
      if (id === this.siteId) {
        this.ownShares = pair;
        return;
      }
      const peer = this.roster.get(id);
      if (!peer) return;
      envelopes.push(
        sealShares(this.ctx, { id: this.siteId, shareSecretKey: shareKeys.secretKey, sharePublicKey: shareKeys.publicKey }, { id, sharePublicKey: peer.sharePublicKey }, pair),
      );
    });
    this.phase = 'shared';
    return envelopes;
  }

  /** Step 1, receiving end: opens the envelopes addressed to this site; their senders are U2. */
  receiveShares(envelopes: readonly ShareEnvelope[]): string[] {
    this.expect('shared', 'receive shares');
    const { shareKeys } = this.keys();
    const held = new Map<string, SharePair>();
    if (this.ownShares) held.set(this.siteId, this.ownShares);
    for (const e of envelopes) {
      if (!this.neighbours.includes(e.from)) throw new PatchFedError('secagg-envelope', `Secure aggregation: '${this.siteId}' got shares from '${e.from}', which is not its neighbour.`, { subject: e.from });
      if (held.has(e.from)) throw new PatchFedError('secagg-envelope', `Secure aggregation: '${this.siteId}' got shares from '${e.from}' twice.`, { subject: e.from });
      const sender = this.roster.get(e.from);
      if (!sender) continue;
      held.set(e.from, openShares(this.ctx, { id: this.siteId, shareSecretKey: shareKeys.secretKey, sharePublicKey: shareKeys.publicKey, x: this.ownX }, { id: e.from, sharePublicKey: sender.sharePublicKey }, e));
    }
    if (held.size < this.threshold) {
      throw new PatchFedError('secagg-threshold', `Secure aggregation: '${this.siteId}' received shares from ${held.size - 1} peer(s); with itself that is below the threshold ${this.threshold}.`, { subject: this.siteId });
    }
    this.held = held;
    this.phase = 'received';
    return [...held.keys()].filter((id) => id !== this.siteId).sort();
  }

  /** Peers whose shares this site holds after receiveShares (U2 ∩ its neighbours), sorted. */
  get shareSenders(): string[] {
    return [...this.held.keys()].filter((id) => id !== this.siteId).sort();
  }

  /**
   * Step 2: the masked input, from the already encoded (fixed-point) update: a new vector, or
   * with `inPlace` the given one masked where it is.
   */
  maskedInput(encoded: Uint32Array, options: { inPlace?: boolean } = {}): Uint32Array {
    this.expect('received', 'mask its input');
    const { maskKeys } = this.keys();
    if (!this.selfSeed) throw new PatchFedError('secagg-phase', `Secure aggregation: site '${this.siteId}' has no self-mask seed.`);
    const own = { id: this.siteId, secretKey: maskKeys.secretKey, publicKey: maskKeys.publicKey };
    const pairwise: SignedSeed[] = [];
    for (const id of this.held.keys()) {
      if (id === this.siteId) continue;
      const peer = this.roster.get(id);
      if (!peer) continue;
      pairwise.push({ seed: pairwiseMaskSeed(this.ctx, own, { id, publicKey: peer.maskPublicKey }), sign: pairwiseSign(this.siteId, id) });
    }
    let masked = encoded;
    if (options.inPlace) maskInPlace(encoded, this.selfSeed, pairwise);
    else masked = maskUpdate(encoded, this.selfSeed, pairwise);
    this.reveal = initialRevealState(this.siteId, this.threshold, this.held, true);
    this.phase = 'masked';
    return masked;
  }

  /** Step 3: the shares the request may have, or a refusal (share-policy.ts). */
  unmaskingResponse(request: UnmaskingRequest): RevealDecision {
    const state = this.reveal ?? initialRevealState(this.siteId, this.threshold, this.held, false);
    const decision = sharesToReveal(request.dropped, request.survivors, state);
    if (decision.ok) this.reveal = decision.state;
    return decision;
  }

  private keys(): { maskKeys: X25519KeyPair; shareKeys: X25519KeyPair } {
    if (!this.maskKeyPair || !this.shareKeyPair) throw new PatchFedError('secagg-phase', `Secure aggregation: site '${this.siteId}' has not made its keys yet.`);
    return { maskKeys: this.maskKeyPair, shareKeys: this.shareKeyPair };
  }
}
