/**
 * Secure aggregation in real federated rounds: coordinator + in-process site clients over
 * loopback socket.io (federation-fixtures.ts), fake deterministic training on a small two-tensor
 * model. What the coordinator gets is masked ring vectors and the survivors' shares; what it
 * produces must be FedAvg's sample-weighted mean within the fixed-point bound, with sites dropping
 * out after their masked upload or after only their shares, and a clean failure below t.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorConfig } from '../shared/config/coordinator.ts';
import { deriveSharedKey, openChunk } from '../shared/crypto/seal.ts';
import { parseMessage } from '../shared/protocol/messages.ts';
import { fixedPointParams } from '../shared/secagg/fixed-point.ts';
import { RING_HEADER_BYTES } from '../shared/secagg/ring-payload.ts';
import type { NamedWeights } from '../shared/weights.ts';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import type { CoordinatorEvents } from '../coordinator/server/events.ts';
import type { ClientEvents } from '../site-agent/daemon/client.ts';
import { collect, fakeInitialWeights, fakeManifest, fakeMetrics, fakeUpdate, makeFederation, startSite, testLog, waitForEvent, type Federation, type TestSite } from './federation-fixtures.ts';

let fed: Federation | null = null;
let coordinator: RunningCoordinator | null = null;
let sites: TestSite[] = [];

afterEach(async () => {
  await Promise.all(sites.map((s) => s.client.stop()));
  await coordinator?.stop();
  fed?.cleanup();
  fed = null;
  coordinator = null;
  sites = [];
});

/** 2 000 + 8 values: one upload chunk per site, enough elements for the correlation test. */
const MODEL = fakeManifest(2000);
const SAMPLE_CAP = 1000;

function secureFederation(ids: string[], threshold: number, experiment: Partial<CoordinatorConfig['experiment']> = {}): Federation {
  return makeFederation({
    sites: ids,
    experiment: {
      rounds: 1,
      minSites: 2,
      maxRoundAttempts: 1,
      roundDeadlineSeconds: 40,
      startupGraceSeconds: 20,
      aggregation: { secure: { threshold, clipRange: 4, sampleCap: SAMPLE_CAP, keysTimeoutSeconds: 20, sharesTimeoutSeconds: 20, unmaskTimeoutSeconds: 4 } },
      ...experiment,
    },
  });
}

function samplesOf(index: number): number {
  return 10 * (index + 1);
}

/** FedAvg of the fake updates of `indices` (float64): what the round must produce. */
function expectedMean(global: NamedWeights, indices: number[]): Float64Array[] {
  const total = indices.reduce((s, i) => s + samplesOf(i), 0);
  const updates = indices.map((i) => fakeUpdate(global, i, 1));
  return global.values.map((g, t) => {
    const out = new Float64Array(g.length);
    indices.forEach((i, k) => {
      const v = updates[k]!.values[t]!;
      for (let j = 0; j < v.length; j++) out[j]! += (samplesOf(i) * v[j]!) / total;
    });
    return out;
  });
}

function maxAbsError(actual: NamedWeights, expected: Float64Array[]): number {
  let worst = 0;
  actual.values.forEach((a, t) => {
    for (let j = 0; j < a.length; j++) worst = Math.max(worst, Math.abs(a[j]! - expected[t]![j]!));
  });
  return worst;
}

/**
 * The stated bound (shared/secagg/fixed-point.ts): every encoded element (ω·Δ_j and ω) is off by
 * at most 1/(2s), so Σω·Δ and Σω are each off by at most n/(2s); the mean Σω·Δ/Σω is then off by
 * at most n·(1 + max|mean Δ|)/(2s·Σω) (to first order), plus float32 rounding of g + mean.
 */
function quantisationBound(n: number, indices: number[], maxSites: number): number {
  const params = fixedPointParams({ maxSites, clip: 4 });
  const totalWeight = indices.reduce((s, i) => s + samplesOf(i) / SAMPLE_CAP, 0);
  const maxDelta = 0.01 * n; // fakeUpdate: |Δ| ≤ 0.01·(index + 1)
  return (n * (1 + maxDelta)) / (2 * params.scale * totalWeight) + 2 ** -23;
}

function startSecureSites(ids: string[], options: (id: string, index: number) => Parameters<typeof startSite>[3] = () => ({})): void {
  sites = ids.map((id, index) =>
    startSite(fed!, coordinator!.url, id, {
      handler: async (task, ctl) => {
        ctl.progress(task.steps, task.steps);
        return { update: fakeUpdate(task.global, index, task.round), samples: samplesOf(index), metrics: fakeMetrics() };
      },
      ...options(id, index),
    }),
  );
}

async function startSecureCoordinator(): Promise<void> {
  coordinator = await startCoordinator(fed!.config, { baseDir: fed!.dir, initialWeights: () => fakeInitialWeights(MODEL), log: testLog() });
}

describe('secure aggregation in federated rounds', () => {
  it('3 sites: the unmasked aggregate is FedAvg within the fixed-point bound, and the coordinator receives no update it could read', async () => {
    const ids = ['site-a', 'site-b', 'site-c'];
    fed = secureFederation(ids, 2);
    await startSecureCoordinator();
    const sent = new Map<string, unknown[]>(ids.map((id) => [id, []]));
    startSecureSites(ids, (id) => ({
      tamper: (type, args) => {
        sent.get(id)!.push({ type, payload: args[0] });
        return args;
      },
    }));
    const completes = sites.map((s) => waitForEvent<ClientEvents['complete']>(s.client, 'complete'));
    const end = await coordinator!.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 1 });
    const finals = await Promise.all(completes);
    const global = fakeInitialWeights(MODEL);
    const expected = expectedMean(global, [0, 1, 2]);
    const bound = quantisationBound(3, [0, 1, 2], 3);
    for (const f of finals) expect(maxAbsError(f.global, expected)).toBeLessThanOrEqual(bound);
    // Not trivially met: the aggregate moved away from the global model by far more than the bound.
    expect(maxAbsError(global, expected)).toBeGreaterThan(100 * bound);

    // Everything each site sent the coordinator, decrypted as the coordinator decrypts it.
    const d = MODEL.reduce((s, m) => s + m.shape.reduce((a, b) => a * b, 1), 0);
    for (const [index, id] of ids.entries()) {
      const messages = sent.get(id)! as { type: string; payload: unknown }[];
      const types = new Set(messages.map((m) => m.type));
      expect([...types].filter((t) => t.startsWith('secagg-')).sort()).toEqual(['secagg-keys', 'secagg-reveal', 'secagg-shares']);
      // The sample count is not sent in the clear: the commit carries the placeholder 1.
      const commits = messages.filter((m) => m.type === 'update-commit').map((m) => parseMessage('update-commit', m.payload));
      expect(commits.map((c) => c.samples)).toEqual([1]);
      // With nobody dropping out, no site reveals a share of anyone's mask secret key.
      for (const r of messages.filter((m) => m.type === 'secagg-reveal').map((m) => parseMessage('secagg-reveal', m.payload))) expect(r.keyShares).toEqual([]);
      const plaintext = uploadedPlaintext(messages, id);
      expect(plaintext.length).toBe(RING_HEADER_BYTES + 4 * (d + 1));
      const words = new Int32Array(plaintext.slice(RING_HEADER_BYTES).buffer);
      // What the site would have sent in the clear: ω·Δ over both tensors (no FedBN here).
      const update = fakeUpdate(global, index, 1);
      const truth: number[] = [];
      update.values.forEach((v, t) => v.forEach((x, j) => truth.push((samplesOf(index) / SAMPLE_CAP) * (x - global.values[t]![j]!))));
      const received = Array.from(words.subarray(0, d));
      // Chance level for d uniform words is ~1/√d; an unmasked vector correlates ~1 (the control).
      expect(Math.abs(correlation(received, truth))).toBeLessThan(5 / Math.sqrt(d));
      const params = fixedPointParams({ maxSites: 3, clip: 4 });
      expect(correlation(truth.map((x) => Math.round(x * params.scale)), truth)).toBeGreaterThan(0.999);
    }
  }, 60_000);

  it('FedBN: the norm tensors stay out of the masked vector and keep the global values; the rest is the weighted mean', async () => {
    const ids = ['site-a', 'site-b', 'site-c'];
    fed = secureFederation(ids, 2, { strategy: { name: 'fedbn' } });
    await startSecureCoordinator();
    const begins: number[] = [];
    startSecureSites(ids, () => ({
      tamper: (type, args) => {
        if (type === 'update-begin') begins.push(parseMessage('update-begin', args[0]).totalBytes);
        return args;
      },
    }));
    const completes = sites.map((s) => waitForEvent<ClientEvents['complete']>(s.client, 'complete'));
    expect(await coordinator!.finished).toMatchObject({ kind: 'complete', round: 1 });
    const global = fakeInitialWeights(MODEL);
    const expected = expectedMean(global, [0, 1, 2]);
    // Only the 2 000 conv values and the weight travel: the 8 norm values never leave the sites.
    expect(begins).toEqual([RING_HEADER_BYTES + 4 * (2000 + 1), RING_HEADER_BYTES + 4 * (2000 + 1), RING_HEADER_BYTES + 4 * (2000 + 1)]);
    for (const f of await Promise.all(completes)) {
      const conv = { manifest: [MODEL[0]!], values: [f.global.values[0]!] };
      expect(maxAbsError(conv, [expected[0]!])).toBeLessThanOrEqual(quantisationBound(3, [0, 1, 2], 3));
      expect(Array.from(f.global.values[1]!)).toEqual(Array.from(global.values[1]!));
    }
  }, 60_000);

  it('a failed attempt is retried with fresh keys: sites that already trained mask their kept update again for the new attempt', async () => {
    const ids = ['site-a', 'site-b', 'site-c'];
    // t = 3: attempt 1 cannot complete while site-c is away.
    fed = secureFederation(ids, 3, {
      maxRoundAttempts: 4,
      aggregation: { secure: { threshold: 3, clipRange: 4, sampleCap: SAMPLE_CAP, keysTimeoutSeconds: 3, sharesTimeoutSeconds: 20, unmaskTimeoutSeconds: 4 } },
    });
    await startSecureCoordinator();
    const failed = collect<CoordinatorEvents['round-failed']>(coordinator!.events, 'round-failed');
    startSecureSites(ids, (id) => ({ start: id !== 'site-c' }));
    await waitForEvent(coordinator!.events, 'round-failed');
    sites.find((s) => s.id === 'site-c')!.client.start();
    const completes = sites.map((s) => waitForEvent<ClientEvents['complete']>(s.client, 'complete', () => true, 50_000));
    expect(await coordinator!.finished).toMatchObject({ kind: 'complete', round: 1 });
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0]!.reason).toMatch(/only 2 site\(s\) advertised keys, the threshold is 3/);
    // site-a and site-b trained once (their update was kept and masked again with the new attempt's keys).
    expect(sites.filter((s) => s.id !== 'site-c').map((s) => s.tasks.length)).toEqual([1, 1]);
    const expected = expectedMean(fakeInitialWeights(MODEL), [0, 1, 2]);
    for (const f of await Promise.all(completes)) expect(maxAbsError(f.global, expected)).toBeLessThanOrEqual(quantisationBound(3, [0, 1, 2], 3));
  }, 60_000);

  it('5 sites, t = 3: two sites drop after their masked upload (no unmasking shares); the sum of all five is exact', async () => {
    const ids = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
    fed = secureFederation(ids, 3);
    await startSecureCoordinator();
    const dropouts = collect<CoordinatorEvents['dropout']>(coordinator!.events, 'dropout');
    const leaving = new Set(['site-b', 'site-d']);
    startSecureSites(ids, (id) => ({
      // These sites go away when asked for their shares: after their masked update was accepted.
      inbound: (type) => {
        if (type === 'secagg-unmask' && leaving.has(id)) void sites.find((s) => s.id === id)?.client.stop();
      },
    }));
    const end = await coordinator!.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 1 });
    const stayed = sites.filter((s) => !leaving.has(s.id));
    const finals = await Promise.all(stayed.map((s) => (s.client.connected ? waitForEvent<ClientEvents['complete']>(s.client, 'complete') : Promise.reject(new Error(`${s.id} offline`)))));
    const expected = expectedMean(fakeInitialWeights(MODEL), [0, 1, 2, 3, 4]);
    for (const f of finals) expect(maxAbsError(f.global, expected)).toBeLessThanOrEqual(quantisationBound(5, [0, 1, 2, 3, 4], 5));
    expect(dropouts.map((e) => e.siteId).sort()).toEqual(['site-b', 'site-d']);
    expect(dropouts.every((e) => /masked update but not its unmasking shares/.test(e.message))).toBe(true);
  }, 60_000);

  it('5 sites, t = 3: two sites drop after sending only their shares; survivors\' key shares remove their masks and the sum of the three is exact', async () => {
    const ids = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
    // The round notices the silent sites when they have been offline for a quarter of the deadline.
    fed = secureFederation(ids, 3, { roundDeadlineSeconds: 12 });
    await startSecureCoordinator();
    const leaving = new Set(['site-c', 'site-e']);
    const reveals: { owner: string; kind: 'self' | 'key' }[] = [];
    startSecureSites(ids, (id) => ({
      // These sites leave as soon as the share step closed: they never upload a masked update.
      inbound: (type) => {
        if (type === 'secagg-envelopes' && leaving.has(id)) void sites.find((s) => s.id === id)?.client.stop();
      },
      tamper: (type, args) => {
        if (type === 'secagg-reveal') {
          const r = parseMessage('secagg-reveal', args[0]);
          reveals.push(...r.selfMaskShares.map((s) => ({ owner: s.owner, kind: 'self' as const })), ...r.keyShares.map((s) => ({ owner: s.owner, kind: 'key' as const })));
        }
        return args;
      },
    }));
    const stayed = sites.filter((s) => !leaving.has(s.id));
    const completes = stayed.map((s) => waitForEvent<ClientEvents['complete']>(s.client, 'complete', () => true, 50_000));
    const end = await coordinator!.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 1 });
    const finals = await Promise.all(completes);
    const survivors = [0, 1, 3];
    const expected = expectedMean(fakeInitialWeights(MODEL), survivors);
    for (const f of finals) expect(maxAbsError(f.global, expected)).toBeLessThanOrEqual(quantisationBound(5, survivors, 5));
    // The coordinator got key shares of the dropped sites only, self-mask shares of the survivors only.
    expect([...new Set(reveals.filter((r) => r.kind === 'key').map((r) => r.owner))].sort()).toEqual(['site-c', 'site-e']);
    expect([...new Set(reveals.filter((r) => r.kind === 'self').map((r) => r.owner))].sort()).toEqual(['site-a', 'site-b', 'site-d']);
  }, 60_000);

  it('5 sites, t = 3: three drop after their shares, two masked updates are fewer than t; the round fails cleanly and the checkpoint stays', async () => {
    const ids = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
    fed = secureFederation(ids, 3, { roundDeadlineSeconds: 12 });
    await startSecureCoordinator();
    const failed = collect<CoordinatorEvents['round-failed']>(coordinator!.events, 'round-failed');
    const leaving = new Set(['site-b', 'site-c', 'site-e']);
    const uploads: string[] = [];
    startSecureSites(ids, (id) => ({
      inbound: (type) => {
        if (type === 'secagg-envelopes' && leaving.has(id)) void sites.find((s) => s.id === id)?.client.stop();
      },
    }));
    for (const s of sites) s.client.on('uploaded', () => uploads.push(s.id));
    const end = await coordinator!.finished;
    expect(end).toMatchObject({ kind: 'stopped', round: 1 });
    expect(uploads.sort()).toEqual(['site-a', 'site-d']);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.reason).toMatch(/secure aggregation failed: .*only 2 site\(s\) sent their masked input, the threshold is 3/);
    // The last checkpoint is still the initial model (round 0).
    expect(coordinator!.checkpoints().map((c) => c.round)).toEqual([0]);
  }, 60_000);
});

/** The plaintext of the site's masked upload, decrypted with the key the coordinator holds. */
function uploadedPlaintext(messages: { type: string; payload: unknown }[], siteId: string): Uint8Array {
  const keys = fed!.siteKeys.get(siteId)!;
  const sharedKey = deriveSharedKey(fed!.coordinatorKeys.boxPublicKey, keys.boxSecretKey);
  const begin = messages.filter((m) => m.type === 'update-begin').map((m) => parseMessage('update-begin', m.payload))[0]!;
  expect(begin.payload).toBe('secagg-ring');
  const chunks = new Map<number, Uint8Array>();
  for (const m of messages.filter((x) => x.type === 'update-chunk')) {
    const c = parseMessage('update-chunk', m.payload);
    if (c.transferId !== begin.transferId) continue;
    const ctx = { transferId: c.transferId, siteId, round: begin.round, index: c.index };
    chunks.set(c.index, openChunk({ ...ctx, nonce: c.nonce, ciphertext: c.ciphertext, signature: c.signature }, ctx, { sharedKey, senderSignPublicKey: keys.signPublicKey }));
  }
  const parts = [...chunks.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function correlation(a: readonly number[], b: readonly number[]): number {
  const n = a.length;
  const ma = a.reduce((s, x) => s + x, 0) / n;
  const mb = b.reduce((s, x) => s + x, 0) / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i]! - ma) * (b[i]! - mb);
    saa += (a[i]! - ma) ** 2;
    sbb += (b[i]! - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
