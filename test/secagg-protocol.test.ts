import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../shared/random.ts';
import {
  addInto,
  cappedWeight,
  decodeWeightedMean,
  encodeWeightedUpdate,
  fixedPointParams,
  generateX25519KeyPair,
  hararyGraph,
  initialRevealState,
  openShares,
  pairwiseMaskSeed,
  sealShares,
  SecAggServerRound,
  SecAggSiteRound,
  sharesToReveal,
  splitSecret,
  sumErrorBound,
  type MaskingGraph,
  type SecAggContext,
  type ShareEnvelope,
  type SharePair,
  type UnmaskingOutcome,
  type UnmaskingResponse,
} from '../shared/secagg/index.ts';
import { patchFedErrorCodeOf as codeOf } from './error-fixtures.ts';

const CTX: SecAggContext = { experiment: 'exp-secagg-test', round: 3 };
const IDS = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];

const sameWords = (a: Uint32Array, b: Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

interface Scenario {
  ids?: string[];
  threshold: number;
  inputs: Map<string, Uint32Array>;
  dropBeforeShares?: readonly string[];
  /** Shared their keys, then vanished before sending the masked input. */
  dropBeforeInput?: readonly string[];
  /** Sent the masked input, then vanished before the unmasking request. */
  dropBeforeUnmask?: readonly string[];
  graph?: (ids: string[]) => MaskingGraph;
}

/** Everything the coordinator process received during the round. */
interface Received {
  maskedInputs: Map<string, Uint32Array>;
  envelopes: ShareEnvelope[];
  responses: Map<string, UnmaskingResponse>;
}

function runRound(s: Scenario): { outcome: UnmaskingOutcome; received: Received; server: SecAggServerRound; sites: Map<string, SecAggSiteRound>; graph: MaskingGraph } {
  const ids = s.ids ?? IDS;
  const length = s.inputs.values().next().value?.length ?? 0;
  const server = new SecAggServerRound(CTX, s.threshold, length);
  const sites = new Map(ids.map((id) => [id, new SecAggSiteRound(id, CTX, s.threshold)]));
  const received: Received = { maskedInputs: new Map(), envelopes: [], responses: new Map() };
  for (const site of sites.values()) server.addAdvertisement(site.advertiseKeys());
  const { roster, graph } = server.closeAdvertisements(s.graph?.(ids));
  for (const [id, site] of sites) {
    if (s.dropBeforeShares?.includes(id)) continue;
    const envelopes = site.shareKeys(roster, graph);
    received.envelopes.push(...envelopes);
    server.addEnvelopes(id, envelopes);
  }
  const u2 = server.closeSharing();
  for (const id of u2) sites.get(id)?.receiveShares(server.envelopesFor(id));
  for (const id of u2) {
    if (s.dropBeforeInput?.includes(id)) continue;
    const masked = sites.get(id)?.maskedInput(s.inputs.get(id) ?? new Uint32Array(length));
    if (!masked) continue;
    received.maskedInputs.set(id, masked);
    server.addMaskedInput(id, masked);
  }
  const u3 = server.closeMaskedInputs();
  for (const id of u3) {
    if (s.dropBeforeUnmask?.includes(id)) continue;
    const decision = sites.get(id)?.unmaskingResponse(server.unmaskingRequest(id));
    if (!decision?.ok) throw new Error(`honest site ${id} refused: ${decision?.ok === false ? decision.reason : 'no site'}`);
    const response = { selfMaskShares: decision.selfMaskShares, keyShares: decision.keyShares };
    received.responses.set(id, response);
    server.addUnmaskingResponse(id, response);
  }
  return { outcome: server.finish(), received, server, sites, graph };
}

function randomInputs(ids: readonly string[], d: number, seed: number): Map<string, Uint32Array> {
  const rng = mulberry32(seed);
  return new Map(ids.map((id) => [id, Uint32Array.from({ length: d }, () => Math.floor(rng() * 2 ** 32))]));
}

function sumOf(inputs: Map<string, Uint32Array>, ids: readonly string[]): Uint32Array {
  const sum = new Uint32Array(inputs.values().next().value?.length ?? 0);
  for (const id of ids) addInto(sum, inputs.get(id) ?? new Uint32Array(sum.length));
  return sum;
}

function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < a.length; i++) {
    ma += a[i] ?? 0;
    mb += b[i] ?? 0;
  }
  ma /= a.length;
  mb /= b.length;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = (a[i] ?? 0) - ma;
    const y = (b[i] ?? 0) - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return sab / Math.sqrt(saa * sbb);
}

describe('secure aggregation round with dropouts (5 sites, threshold 3)', () => {
  const inputs = randomInputs(IDS, 2000, 42);

  it.each([
    ['no dropout', {}, IDS],
    ['1 site drops after sending its masked vector', { dropBeforeUnmask: ['site-b'] }, IDS],
    ['2 sites drop after sending their masked vectors', { dropBeforeUnmask: ['site-b', 'site-e'] }, IDS],
    ['1 site drops after only sending shares', { dropBeforeInput: ['site-c'] }, ['site-a', 'site-b', 'site-d', 'site-e']],
    ['2 sites drop after only sending shares', { dropBeforeInput: ['site-a', 'site-d'] }, ['site-b', 'site-c', 'site-e']],
    ['1 drops after shares, 1 after its masked vector', { dropBeforeInput: ['site-a'], dropBeforeUnmask: ['site-e'] }, ['site-b', 'site-c', 'site-d', 'site-e']],
    ['1 never shares keys, 1 drops after shares', { dropBeforeShares: ['site-c'], dropBeforeInput: ['site-d'] }, ['site-a', 'site-b', 'site-e']],
  ] as const)('%s: the unmasked sum is exactly the sum of the included sites’ vectors', (_name, drops, included) => {
    const { outcome } = runRound({ threshold: 3, inputs, ...drops });
    expect(outcome.included).toEqual([...included]);
    expect(sameWords(outcome.sum, sumOf(inputs, included))).toBe(true);
    expect(outcome.droppedAfterSharing).toEqual([...(drops as { dropBeforeInput?: readonly string[] }).dropBeforeInput ?? []].sort());
  });

  it('fails cleanly when fewer than t sites send their masked input', () => {
    expect(codeOf(() => runRound({ threshold: 4, inputs, dropBeforeInput: ['site-a', 'site-b'] }))).toBe('secagg-too-few-sites');
  });

  it('fails cleanly when fewer than t survivors answer the unmasking request', () => {
    expect(codeOf(() => runRound({ threshold: 3, inputs, dropBeforeInput: ['site-a'], dropBeforeUnmask: ['site-b', 'site-c'] }))).toBe('secagg-too-few-sites');
  });

  it('fails cleanly when fewer than t sites share their keys', () => {
    expect(codeOf(() => runRound({ threshold: 3, inputs, dropBeforeShares: ['site-a', 'site-b', 'site-c'] }))).toBe('secagg-too-few-sites');
  });

  it('SecAgg+ Harary graph (10 sites, 6 neighbours each, threshold 3) with 2 + 1 dropouts: exact sum, fewer masks per site', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `h${String(i).padStart(2, '0')}`);
    const hInputs = randomInputs(ids, 500, 7);
    const seed = new Uint8Array(32).fill(3);
    const { outcome, graph } = runRound({ ids, threshold: 3, inputs: hInputs, graph: (all) => hararyGraph(all, 6, seed), dropBeforeInput: ['h02', 'h07'], dropBeforeUnmask: ['h04'] });
    for (const id of ids) expect(graph.get(id)?.length).toBe(6);
    const included = ids.filter((id) => id !== 'h02' && id !== 'h07');
    expect(outcome.included).toEqual(included);
    expect(sameWords(outcome.sum, sumOf(hInputs, included))).toBe(true);
    // Same seed, same graph on every machine; symmetric.
    expect(hararyGraph(ids, 6, seed)).toEqual(graph);
    for (const [id, ns] of graph) for (const v of ns) expect(graph.get(v)).toContain(id);
  });

  it('end to end with real updates: the unmasked weighted mean equals plain FedAvg within the quantisation bound', () => {
    const rng = mulberry32(19);
    const d = 3000;
    const p = fixedPointParams({ maxSites: 8 });
    const samples = new Map(IDS.map((id, i) => [id, [20, 35, 8, 50, 27][i] ?? 1]));
    const updates = new Map(IDS.map((id) => [id, Float32Array.from({ length: d }, () => (rng() * 2 - 1) * 0.02)]));
    const encoded = new Map(IDS.map((id) => [id, encodeWeightedUpdate(updates.get(id) ?? new Float32Array(d), p, { weight: cappedWeight(samples.get(id) ?? 0, 64) }).vector]));
    const { outcome } = runRound({ threshold: 3, inputs: encoded, dropBeforeInput: ['site-b'], dropBeforeUnmask: ['site-d'] });
    const { mean, totalWeight } = decodeWeightedMean(outcome.sum, p);
    const included = outcome.included;
    const totalSamples = included.reduce((n, id) => n + (samples.get(id) ?? 0), 0);
    let worst = 0;
    for (let j = 0; j < d; j++) {
      let fedavg = 0;
      for (const id of included) fedavg += (samples.get(id) ?? 0) * (updates.get(id)?.[j] ?? 0);
      fedavg /= totalSamples;
      const bound = (sumErrorBound(p, included.length) * (1 + Math.abs(fedavg))) / totalWeight + Math.abs(fedavg) * 2 ** -23;
      worst = Math.max(worst, Math.abs((mean[j] ?? 0) - fedavg) / bound);
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(Math.abs(totalWeight - totalSamples / 64)).toBeLessThanOrEqual(sumErrorBound(p, included.length));
  });
});

describe('what the coordinator holds reveals no individual update', () => {
  it('no received masked vector correlates with any site’s true update beyond chance; the unmasked sum does', () => {
    const d = 20_000;
    const rng = mulberry32(23);
    const p = fixedPointParams({ maxSites: 8 });
    // Updates share a strong common pattern, as real updates of one model do.
    const pattern = Float32Array.from({ length: d }, (_, j) => Math.sin(j / 50) * 0.01);
    const updates = new Map(IDS.map((id) => [id, Float32Array.from(pattern, (v) => v + (rng() * 2 - 1) * 0.002)]));
    const encoded = new Map(IDS.map((id) => [id, encodeWeightedUpdate(updates.get(id) ?? pattern, p, { weight: 1 }).vector]));
    const { outcome, received } = runRound({ threshold: 3, inputs: encoded, dropBeforeUnmask: ['site-c'] });
    const limit = 5 / Math.sqrt(d); // |r| of independent vectors is ~N(0, 1/d)
    for (const masked of received.maskedInputs.values()) {
      const signed = Int32Array.from(masked.subarray(0, d), (w) => w | 0);
      for (const update of updates.values()) expect(Math.abs(pearson(signed, update))).toBeLessThan(limit);
    }
    // Control: the statistic does detect an update where there is one.
    const { mean } = decodeWeightedMean(outcome.sum, p);
    for (const update of updates.values()) expect(pearson(mean, update)).toBeGreaterThan(0.9);
    const ownEncoding = Int32Array.from((encoded.get('site-a') ?? new Uint32Array(d)).subarray(0, d), (w) => w | 0);
    expect(pearson(ownEncoding, updates.get('site-a') ?? pattern)).toBeGreaterThan(0.99);
  });

  it('an honest run never gives the coordinator both kinds of share of any site', () => {
    const inputs = randomInputs(IDS, 100, 1);
    const { received } = runRound({ threshold: 3, inputs, dropBeforeInput: ['site-b'], dropBeforeUnmask: ['site-e'] });
    const selfOwners = new Set([...received.responses.values()].flatMap((r) => r.selfMaskShares.map((s) => s.owner)));
    const keyOwners = new Set([...received.responses.values()].flatMap((r) => r.keyShares.map((s) => s.owner)));
    expect([...keyOwners]).toEqual(['site-b']);
    for (const id of selfOwners) expect(keyOwners.has(id)).toBe(false);
  });
});

describe('an honest site’s share-release policy', () => {
  /** One site's reveal state with real shares of five owners. */
  function state(siteId = 'site-a', threshold = 3) {
    const held = new Map<string, SharePair>();
    IDS.forEach((owner) => {
      const s = new Uint8Array(32).fill(IDS.indexOf(owner) + 1);
      const [selfMaskShare] = splitSecret(s, [1, 2, 3, 4, 5], threshold);
      const [keyShare] = splitSecret(s.map((b) => b ^ 0xff), [1, 2, 3, 4, 5], threshold);
      if (selfMaskShare && keyShare) held.set(owner, { selfMaskShare, keyShare });
    });
    return initialRevealState(siteId, threshold, held, true);
  }

  it('answers an honest request with self-mask shares of survivors and key shares of the dropped', () => {
    const d = sharesToReveal(['site-c'], ['site-a', 'site-b', 'site-d', 'site-e'], state());
    if (!d.ok) throw new Error(d.reason);
    expect(d.keyShares.map((s) => s.owner)).toEqual(['site-c']);
    expect(d.selfMaskShares.map((s) => s.owner)).toEqual(['site-a', 'site-b', 'site-d', 'site-e']);
    // Repeating the same request (a retry) is fine.
    expect(sharesToReveal(['site-c'], ['site-a', 'site-b', 'site-d', 'site-e'], d.state).ok).toBe(true);
  });

  it('refuses a cheating coordinator asking for both shares of one site, at once or in two requests', () => {
    const both = sharesToReveal(['site-b'], ['site-a', 'site-b', 'site-d'], state());
    expect(both.ok === false && both.refusal).toBe('both-shares-requested');
    const first = sharesToReveal([], ['site-a', 'site-b', 'site-c'], state());
    if (!first.ok) throw new Error(first.reason);
    const second = sharesToReveal(['site-b'], ['site-a', 'site-c', 'site-d'], first.state);
    expect(second.ok === false && second.refusal).toBe('conflicts-with-earlier-reveal');
    const reverse = sharesToReveal(['site-d'], ['site-a', 'site-b', 'site-c'], state());
    if (!reverse.ok) throw new Error(reverse.reason);
    const again = sharesToReveal([], ['site-a', 'site-b', 'site-d'], reverse.state);
    expect(again.ok === false && again.refusal).toBe('conflicts-with-earlier-reveal');
  });

  it('refuses requests no honest coordinator sends', () => {
    const cases: [string[], string[], string][] = [
      [['site-a'], ['site-b', 'site-c', 'site-d'], 'self-declared-dropped'],
      [[], ['site-b', 'site-c', 'site-d'], 'self-not-listed'],
      [[], ['site-a', 'site-b'], 'too-few-survivors'],
      [['site-z'], ['site-a', 'site-b', 'site-c'], 'unknown-peer'],
      [[], ['site-a', 'site-a', 'site-b'], 'malformed-request'],
    ];
    for (const [dropped, survivors, refusal] of cases) {
      const d = sharesToReveal(dropped, survivors, state());
      expect(d.ok === false && d.refusal).toBe(refusal);
    }
    const notSubmitted = sharesToReveal([], ['site-a', 'site-b', 'site-c'], { ...state(), submitted: false });
    expect(notSubmitted.ok === false && notSubmitted.refusal).toBe('not-submitted');
  });

  it('every honest site of a real round refuses a request for both shares of a survivor', () => {
    const inputs = randomInputs(IDS, 50, 2);
    const server = new SecAggServerRound(CTX, 3, 50);
    const sites = IDS.map((id) => new SecAggSiteRound(id, CTX, 3));
    for (const s of sites) server.addAdvertisement(s.advertiseKeys());
    const { roster, graph } = server.closeAdvertisements();
    for (const s of sites) server.addEnvelopes(s.siteId, s.shareKeys(roster, graph));
    server.closeSharing();
    for (const s of sites) s.receiveShares(server.envelopesFor(s.siteId));
    for (const s of sites) server.addMaskedInput(s.siteId, s.maskedInput(inputs.get(s.siteId) ?? new Uint32Array(50)));
    server.closeMaskedInputs();
    for (const s of sites.filter((x) => x.siteId !== 'site-b')) {
      const d = s.unmaskingResponse({ dropped: ['site-b'], survivors: IDS });
      expect(d.ok === false && d.refusal).toBe('both-shares-requested');
      const split = s.unmaskingResponse({ dropped: [], survivors: IDS });
      expect(split.ok).toBe(true);
      const later = s.unmaskingResponse({ dropped: ['site-b'], survivors: IDS.filter((id) => id !== 'site-b') });
      expect(later.ok === false && later.refusal).toBe('conflicts-with-earlier-reveal');
    }
  });
});

describe('share envelopes and keys', () => {
  const alice = generateX25519KeyPair();
  const bob = generateX25519KeyPair();
  const [selfMaskShare] = splitSecret(new Uint8Array(32).fill(1), [2, 3], 2);
  const [keyShare] = splitSecret(new Uint8Array(32).fill(2), [2, 3], 2);
  const pair: SharePair = { selfMaskShare: selfMaskShare ?? { x: 2, y: 0n }, keyShare: keyShare ?? { x: 2, y: 0n } };
  const sender = { id: 'site-a', shareSecretKey: alice.secretKey, sharePublicKey: alice.publicKey };
  const recipient = { id: 'site-b', shareSecretKey: bob.secretKey, sharePublicKey: bob.publicKey, x: 2 };

  it('opens only for its recipient, in its round, unmodified', () => {
    const env = sealShares(CTX, sender, recipient, pair);
    expect(openShares(CTX, recipient, { id: 'site-a', sharePublicKey: alice.publicKey }, env)).toEqual(pair);
    const tampered = { ...env, ciphertext: Uint8Array.from(env.ciphertext, (b, i) => (i === 10 ? b ^ 1 : b)) };
    expect(codeOf(() => openShares(CTX, recipient, { id: 'site-a', sharePublicKey: alice.publicKey }, tampered))).toBe('secagg-envelope');
    expect(codeOf(() => openShares({ ...CTX, round: CTX.round + 1 }, recipient, { id: 'site-a', sharePublicKey: alice.publicKey }, env))).toBe('secagg-envelope');
    const carol = generateX25519KeyPair();
    expect(codeOf(() => openShares(CTX, { ...recipient, id: 'site-c', shareSecretKey: carol.secretKey, sharePublicKey: carol.publicKey }, { id: 'site-a', sharePublicKey: alice.publicKey }, env))).toBe('secagg-envelope');
  });

  it('pairwise seeds agree on both ends, differ per round and pair, and low-order keys are refused', () => {
    const a = generateX25519KeyPair();
    const b = generateX25519KeyPair();
    const ab = pairwiseMaskSeed(CTX, { id: 'a', ...a }, { id: 'b', publicKey: b.publicKey });
    expect(pairwiseMaskSeed(CTX, { id: 'b', ...b }, { id: 'a', publicKey: a.publicKey })).toEqual(ab);
    expect(pairwiseMaskSeed({ ...CTX, round: 4 }, { id: 'a', ...a }, { id: 'b', publicKey: b.publicKey })).not.toEqual(ab);
    expect(pairwiseMaskSeed({ ...CTX, experiment: 'other' }, { id: 'a', ...a }, { id: 'b', publicKey: b.publicKey })).not.toEqual(ab);
    expect(codeOf(() => pairwiseMaskSeed(CTX, { id: 'a', ...a }, { id: 'b', publicKey: new Uint8Array(32) }))).toBe('secagg-bad-key');
  });

  it('a roster that repeats a public key or a site is refused', () => {
    const server = new SecAggServerRound(CTX, 2, 10);
    const k = generateX25519KeyPair().publicKey;
    server.addAdvertisement({ siteId: 'x', maskPublicKey: k, sharePublicKey: generateX25519KeyPair().publicKey });
    server.addAdvertisement({ siteId: 'y', maskPublicKey: k, sharePublicKey: generateX25519KeyPair().publicKey });
    expect(codeOf(() => server.closeAdvertisements())).toBe('secagg-roster');
    expect(codeOf(() => server.addAdvertisement({ siteId: 'x', maskPublicKey: k, sharePublicKey: k }))).toBe('secagg-roster');
  });
});
