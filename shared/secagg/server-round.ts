/**
 * The coordinator's side of one secure-aggregation round (Bonawitz et al. 2017, §4, Fig. 4): it
 * only relays keys and envelopes, adds masked vectors mod 2^32, and at the end reconstructs from
 * the survivors' shares exactly what removes the masks — the self-mask seeds of the sites whose
 * masked input arrived (U3) and the mask secret keys of the sites that shared keys but never sent
 * their input (U2 \ U3). It never holds an unmasked individual update: the only vector it keeps
 * is the running sum (O(model) memory however many sites).
 *
 * Pure (no I/O, no clock); the caller carries messages and decides deadlines. The sets follow the
 * paper: U1 advertised keys, U2 sent shares, U3 sent masked input, U4 answered the unmasking
 * request. Fewer than `threshold` sites at any step fails the round with a clean PatchFedError.
 */
import { PatchFedError } from '../errors.ts';
import { bytesEqual } from '../crypto/encoding.ts';
import { completeGraph, neighboursOf, type MaskingGraph } from './graph.ts';
import { pairwiseMaskSeed, x25519PublicKeyOf, type SecAggContext } from './key-agreement.ts';
import { addInto, pairwiseSign, unmaskInPlace, type SignedSeed } from './masking.ts';
import { combineShares, type Share } from './shamir.ts';
import type { ShareEnvelope } from './share-envelope.ts';
import type { RevealedShare } from './share-policy.ts';
import { checkRoster, type KeyAdvertisement, type UnmaskingRequest } from './site-round.ts';

export interface UnmaskingResponse {
  selfMaskShares: readonly RevealedShare[];
  keyShares: readonly RevealedShare[];
}

export interface UnmaskingOutcome {
  /** Σ x_u over U3, mod 2^32 (decode with fixed-point.ts). */
  sum: Uint32Array;
  /** Sites whose input is in the sum. */
  included: string[];
  /** Sites that shared keys but whose input never arrived: their pairwise masks were removed. */
  droppedAfterSharing: string[];
}

type Phase = 'keys' | 'sharing' | 'inputs' | 'unmasking' | 'done';

export class SecAggServerRound {
  private readonly ctx: SecAggContext;
  private readonly threshold: number;
  private readonly vectorLength: number;
  private phase: Phase = 'keys';
  private readonly adverts = new Map<string, KeyAdvertisement>();
  private graph: MaskingGraph = new Map();
  private readonly envelopes = new Map<string, ShareEnvelope[]>();
  private readonly sharedKeys = new Set<string>();
  private readonly inputs = new Set<string>();
  private sum: Uint32Array;
  private readonly responses = new Map<string, UnmaskingResponse>();
  /** An input is being streamed into the sum (addMaskedInputBlocks). */
  private adding: string | null = null;
  /** Set when an input failed half-way: the sum is no longer a sum of whole inputs. */
  private broken: string | null = null;

  constructor(ctx: SecAggContext, threshold: number, vectorLength: number) {
    if (!(Number.isSafeInteger(vectorLength) && vectorLength >= 1)) {
      throw new PatchFedError('secagg-length', `Secure aggregation: the vector length must be a positive integer, got ${String(vectorLength)}.`);
    }
    this.ctx = ctx;
    this.threshold = threshold;
    this.vectorLength = vectorLength;
    this.sum = new Uint32Array(vectorLength);
  }

  private expect(phase: Phase, step: string): void {
    if (this.phase !== phase) throw new PatchFedError('secagg-phase', `Secure aggregation round ${this.ctx.round}: cannot ${step} in step '${this.phase}'.`);
  }

  private tooFew(count: number, what: string): PatchFedError {
    return new PatchFedError('secagg-too-few-sites', `Secure aggregation round ${this.ctx.round} failed: only ${count} site(s) ${what}, the threshold is ${this.threshold}.`);
  }

  addAdvertisement(ad: KeyAdvertisement): void {
    this.expect('keys', 'accept keys');
    if (this.adverts.has(ad.siteId)) throw new PatchFedError('secagg-roster', `Secure aggregation: site '${ad.siteId}' advertised keys twice.`, { subject: ad.siteId });
    this.adverts.set(ad.siteId, ad);
  }

  /** The step the round is in. */
  get step(): Phase {
    return this.phase;
  }

  /** The keys `siteId` advertised, if it did. */
  advertisementOf(siteId: string): KeyAdvertisement | undefined {
    return this.adverts.get(siteId);
  }

  /** Takes back an advertisement before the roster is fixed (the site left the round). */
  withdrawAdvertisement(siteId: string): void {
    this.expect('keys', 'withdraw keys');
    this.adverts.delete(siteId);
  }

  /** Whether `siteId` is in U2 (its shares were accepted). */
  hasShared(siteId: string): boolean {
    return this.sharedKeys.has(siteId);
  }

  /** Whether `siteId`'s masked input is in the sum (U3). */
  hasInput(siteId: string): boolean {
    return this.inputs.has(siteId);
  }

  /** Whether `siteId` answered the unmasking request. */
  hasResponded(siteId: string): boolean {
    return this.responses.has(siteId);
  }

  /** U1 is fixed: returns the roster (sorted by id) and the masking graph every site receives. */
  closeAdvertisements(graph?: MaskingGraph): { roster: KeyAdvertisement[]; graph: MaskingGraph } {
    this.expect('keys', 'close key advertisement');
    if (this.adverts.size < this.threshold) throw this.tooFew(this.adverts.size, 'advertised keys');
    const roster = [...this.adverts.values()].sort((a, b) => (a.siteId < b.siteId ? -1 : 1));
    checkRoster(roster, this.threshold);
    this.graph = graph ?? completeGraph(roster.map((a) => a.siteId));
    for (const id of this.adverts.keys()) neighboursOf(this.graph, id);
    this.phase = 'sharing';
    return { roster, graph: this.graph };
  }

  /** One site's envelopes: each must come from it and go to one of its neighbours, once. */
  addEnvelopes(from: string, envelopes: readonly ShareEnvelope[]): void {
    this.expect('sharing', 'accept shares');
    if (!this.adverts.has(from)) throw new PatchFedError('secagg-envelope', `Secure aggregation: '${from}' sent shares without advertising keys.`, { subject: from });
    if (this.sharedKeys.has(from)) throw new PatchFedError('secagg-envelope', `Secure aggregation: '${from}' sent its shares twice.`, { subject: from });
    const neighbours = new Set(neighboursOf(this.graph, from));
    const seen = new Set<string>();
    for (const e of envelopes) {
      if (e.from !== from || !neighbours.has(e.to) || seen.has(e.to)) {
        throw new PatchFedError('secagg-envelope', `Secure aggregation: '${from}' sent an envelope from '${e.from}' to '${e.to}', which it may not send.`, { subject: from });
      }
      seen.add(e.to);
    }
    if (seen.size !== neighbours.size) throw new PatchFedError('secagg-envelope', `Secure aggregation: '${from}' sent shares to ${seen.size} of its ${neighbours.size} neighbours.`, { subject: from });
    for (const e of envelopes) this.envelopes.set(e.to, [...(this.envelopes.get(e.to) ?? []), e]);
    this.sharedKeys.add(from);
  }

  /** U2 is fixed; every site of U2 then receives `envelopesFor(itself)`. */
  closeSharing(): string[] {
    this.expect('sharing', 'close the share step');
    if (this.sharedKeys.size < this.threshold) throw this.tooFew(this.sharedKeys.size, 'sent their shares');
    this.phase = 'inputs';
    return [...this.sharedKeys].sort();
  }

  /** The envelopes addressed to `siteId` from sites of U2. */
  envelopesFor(siteId: string): ShareEnvelope[] {
    return (this.envelopes.get(siteId) ?? []).filter((e) => this.sharedKeys.has(e.from));
  }

  /** Adds one masked input to the running sum (the vector is not kept). */
  addMaskedInput(siteId: string, masked: Uint32Array): void {
    this.expect('inputs', 'accept masked inputs');
    if (!this.sharedKeys.has(siteId)) throw new PatchFedError('secagg-input', `Secure aggregation: '${siteId}' sent a masked input without having shared its keys.`, { subject: siteId });
    if (this.inputs.has(siteId)) throw new PatchFedError('secagg-input', `Secure aggregation: '${siteId}' sent its masked input twice.`, { subject: siteId });
    if (masked.length !== this.vectorLength) {
      throw new PatchFedError('secagg-length', `Secure aggregation: the masked input of '${siteId}' has ${masked.length} elements, ${this.vectorLength} expected.`, { subject: siteId });
    }
    addInto(this.sum, masked);
    this.inputs.add(siteId);
  }

  /**
   * Adds one masked input to the running sum block by block, as `feed` produces the blocks (from
   * a spool file on the coordinator: no second vector in memory). If feeding fails after a block
   * was added, the sum is no longer a sum of whole inputs: the round is marked broken and finish()
   * refuses; a feed that fails before its first block (a bad header) changes nothing.
   */
  async addMaskedInputBlocks(siteId: string, feed: (add: (words: Uint32Array, offset: number) => void) => Promise<void>): Promise<void> {
    this.expect('inputs', 'accept masked inputs');
    if (!this.sharedKeys.has(siteId)) throw new PatchFedError('secagg-input', `Secure aggregation: '${siteId}' sent a masked input without having shared its keys.`, { subject: siteId });
    if (this.inputs.has(siteId)) throw new PatchFedError('secagg-input', `Secure aggregation: '${siteId}' sent its masked input twice.`, { subject: siteId });
    if (this.adding !== null) throw new PatchFedError('secagg-busy', `Secure aggregation: '${siteId}' sent its masked input while '${this.adding}''s is being added; inputs are added one at a time.`, { subject: siteId });
    if (this.broken) throw new PatchFedError('secagg-broken', `Secure aggregation round ${this.ctx.round}: ${this.broken}.`);
    this.adding = siteId;
    let added = 0;
    const sum = this.sum;
    try {
      await feed((words, offset) => {
        if (offset !== added || offset + words.length > sum.length) {
          throw new PatchFedError('secagg-length', `Secure aggregation: the masked input of '${siteId}' arrived out of order or too long (block at ${offset}, ${added} added, ${sum.length} expected).`, { subject: siteId });
        }
        for (let j = 0; j < words.length; j++) sum[offset + j] = ((sum[offset + j] ?? 0) + (words[j] ?? 0)) >>> 0;
        added += words.length;
      });
      if (added !== sum.length) {
        throw new PatchFedError('secagg-length', `Secure aggregation: the masked input of '${siteId}' has ${added} elements, ${sum.length} expected.`, { subject: siteId });
      }
    } catch (e) {
      if (added > 0) this.broken = `adding the masked input of '${siteId}' failed half-way (${e instanceof Error ? e.message : String(e)})`;
      throw e;
    } finally {
      this.adding = null;
    }
    this.inputs.add(siteId);
  }

  /** U3 is fixed; fewer than t inputs fails the round (their sum would be too revealing). */
  closeMaskedInputs(): string[] {
    this.expect('inputs', 'close the input step');
    if (this.adding !== null) throw new PatchFedError('secagg-busy', `Secure aggregation round ${this.ctx.round}: the input of '${this.adding}' is still being added.`);
    if (this.broken) throw new PatchFedError('secagg-broken', `Secure aggregation round ${this.ctx.round} failed: ${this.broken}.`);
    if (this.inputs.size < this.threshold) throw this.tooFew(this.inputs.size, 'sent their masked input');
    this.phase = 'unmasking';
    return [...this.inputs].sort();
  }

  /** What survivor `siteId` is asked: key shares of its dropped neighbours, self-mask shares of its surviving ones and itself. */
  unmaskingRequest(siteId: string): UnmaskingRequest {
    this.expect('unmasking', 'ask for shares');
    if (!this.inputs.has(siteId)) throw new PatchFedError('secagg-input', `Secure aggregation: '${siteId}' is not a survivor of round ${this.ctx.round}.`, { subject: siteId });
    const around = [siteId, ...neighboursOf(this.graph, siteId)].filter((id) => this.sharedKeys.has(id));
    return { dropped: around.filter((id) => !this.inputs.has(id)).sort(), survivors: around.filter((id) => this.inputs.has(id)).sort() };
  }

  addUnmaskingResponse(siteId: string, response: UnmaskingResponse): void {
    this.expect('unmasking', 'accept shares');
    if (!this.inputs.has(siteId)) throw new PatchFedError('secagg-input', `Secure aggregation: '${siteId}' answered the unmasking request without being a survivor.`, { subject: siteId });
    if (this.responses.has(siteId)) throw new PatchFedError('secagg-input', `Secure aggregation: '${siteId}' answered the unmasking request twice.`, { subject: siteId });
    this.responses.set(siteId, response);
  }

  /**
   * Reconstructs the needed secrets from the responses (U4) and unmasks the sum. Fails cleanly
   * when some secret has fewer than t shares, or a reconstructed key does not match its
   * advertised public key (a corrupted share).
   */
  finish(): UnmaskingOutcome {
    this.expect('unmasking', 'unmask');
    if (this.broken) throw new PatchFedError('secagg-broken', `Secure aggregation round ${this.ctx.round} failed: ${this.broken}.`);
    if (this.responses.size < this.threshold) throw this.tooFew(this.responses.size, 'answered the unmasking request');
    const selfShares = new Map<string, Share[]>();
    const keyShares = new Map<string, Share[]>();
    for (const response of this.responses.values()) {
      for (const r of response.selfMaskShares) selfShares.set(r.owner, [...(selfShares.get(r.owner) ?? []), r.share]);
      for (const r of response.keyShares) keyShares.set(r.owner, [...(keyShares.get(r.owner) ?? []), r.share]);
    }
    const included = [...this.inputs].sort();
    const dropped = [...this.sharedKeys].filter((id) => !this.inputs.has(id)).sort();
    const selfSeeds = included.map((id) => combineShares(selfShares.get(id) ?? [], this.threshold, `self-mask seed of '${id}'`));
    const pairwise: SignedSeed[] = [];
    for (const u of dropped) {
      const secretKey = combineShares(keyShares.get(u) ?? [], this.threshold, `mask secret key of '${u}'`);
      const advert = this.adverts.get(u);
      if (!advert || !bytesEqual(x25519PublicKeyOf(secretKey), advert.maskPublicKey)) {
        throw new PatchFedError('secagg-inconsistent-shares', `Secure aggregation: the key shares of '${u}' reconstruct a key that is not the one it advertised.`, { subject: u });
      }
      const own = { id: u, secretKey, publicKey: advert.maskPublicKey };
      for (const v of neighboursOf(this.graph, u)) {
        const peer = this.adverts.get(v);
        if (!this.inputs.has(v) || !peer) continue;
        pairwise.push({ seed: pairwiseMaskSeed(this.ctx, own, { id: v, publicKey: peer.maskPublicKey }), sign: pairwiseSign(v, u) });
      }
    }
    unmaskInPlace(this.sum, selfSeeds, pairwise);
    this.phase = 'done';
    const sum = this.sum;
    this.sum = new Uint32Array(0);
    return { sum, included, droppedAfterSharing: dropped };
  }
}
