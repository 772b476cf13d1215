/**
 * Site-level DP-FedAvg in real federated rounds (coordinator + three in-process site clients):
 *  - central DP: sites clip (instructed by the signed task), the coordinator clips again and adds
 *    N(0, (zC)²) to the sum; distributed DP: each site adds N(0, (zC)²/n) to its clipped update
 *    before upload. Either way the new global is g + (Σ clip(Δ_i) + noise)/m, and the test checks
 *    both the clipped mean and the noise's standard deviation (≈ zC/m over 3000 coordinates);
 *  - the ε each checkpoint's meta.json carries (and the dashboard shows) is the RDP accountant's
 *    value for the run's settings;
 *  - an ε budget stops the experiment before the round that would exceed it, with an event and
 *    the reason, and the last checkpoint stays the final one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import { RdpAccountant, readPrivacyRecord } from '../coordinator/privacy/index.ts';
import type { DpSpec } from '../shared/config/strategy.ts';
import type { NamedWeights } from '../shared/weights.ts';
import type { ClientEvents } from '../site-agent/daemon/client.ts';
import { fakeInitialWeights, fakeManifest, fakeUpdate, makeFederation, startSite, testLog, waitForEvent, type Federation, type TestSite } from './federation-fixtures.ts';

const MANIFEST = fakeManifest(3000);
const Z = 0.5;
const C = 0.2;
const DELTA = 1e-5;

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

function accountantEpsilon(rounds: number, samplingRate = 1): number {
  const a = new RdpAccountant();
  a.compose({ samplingRate, noiseMultiplier: Z }, rounds);
  return a.epsilon(DELTA).epsilon;
}

/** g + Σ_i clip_C(Δ_i) / m in float64, with the fixture's deterministic site updates. */
function clippedMean(before: NamedWeights, round: number, m: number): Float64Array[] {
  const deltas = [0, 1, 2].map((i) => fakeUpdate(before, i, round).values.map((v, t) => Float64Array.from(v, (x, j) => x - before.values[t]![j]!)));
  const out = before.values.map((v) => Float64Array.from(v));
  for (const d of deltas) {
    const norm = Math.sqrt(d.reduce((s, part) => s + part.reduce((a, x) => a + x * x, 0), 0));
    const factor = Math.min(1, C / norm);
    expect(factor).toBeLessThan(1); // the fixture's updates are larger than C: clipping is exercised
    d.forEach((part, t) => part.forEach((x, j) => (out[t]![j]! += (factor * x) / m)));
  }
  return out;
}

/** Mean and standard deviation of (actual − expected) over every value. */
function residual(actual: NamedWeights, expected: Float64Array[]): { mean: number; std: number } {
  let n = 0;
  let sum = 0;
  let sq = 0;
  actual.values.forEach((v, t) => {
    for (let j = 0; j < v.length; j++) {
      const r = v[j]! - expected[t]![j]!;
      n++;
      sum += r;
      sq += r * r;
    }
  });
  const mean = sum / n;
  return { mean, std: Math.sqrt(sq / n - mean * mean) };
}

function metaOf(version: number): { extra: Record<string, unknown> } {
  const dir = join(fed!.dir, fed!.config.stateDir, 'checkpoints', `v${String(version).padStart(6, '0')}`);
  return JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { extra: Record<string, unknown> };
}

async function runDp(dp: DpSpec, rounds: number, id: string) {
  fed = makeFederation({ experiment: { id, rounds, strategy: { name: 'fedavg', dp } } });
  coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, initialWeights: () => fakeInitialWeights(MANIFEST), log: testLog() });
  const stopped = waitForEvent<{ round: number; reason: string }>(coordinator.events as never, 'experiment-stopped', () => true, 120_000).catch(() => null);
  const ids = [...fed.siteKeys.keys()];
  sites = ids.map((siteId) => startSite(fed!, coordinator!.url, siteId));
  const completes = sites.map((s) => waitForEvent<ClientEvents['complete']>(s.client, 'complete', () => true, 120_000).catch(() => null));
  const end = await coordinator.finished;
  return { end, stopped, completes };
}

describe('differential privacy in federated rounds', () => {
  for (const mode of ['central', 'distributed'] as const) {
    it(`${mode} DP: clipped mean plus noise of std zC/m; ε in every checkpoint equals the accountant's`, async () => {
      const { end, completes } = await runDp({ mode, noiseMultiplier: Z, clipNorm: C, delta: DELTA }, 2, `dp-${mode}`);
      expect(end).toMatchObject({ kind: 'complete', round: 2 });
      const finals = await Promise.all(completes);
      // The signed task told every site to clip to C (and, distributed, its noise share zC/√3).
      for (const s of sites) {
        for (const task of s.tasks) expect(task.fit.dp).toEqual(mode === 'central' ? { clipNorm: C } : { clipNorm: C, noiseStd: (Z * C) / Math.sqrt(3) });
      }
      for (const round of [1, 2]) {
        const before = sites[0]!.tasks.find((t) => t.round === round)!.global;
        const after = round === 1 ? sites[0]!.tasks.find((t) => t.round === 2)!.global : finals[0]!.global;
        const r = residual(after, clippedMean(before, round, 3));
        const expectedStd = (Z * C) / 3;
        expect(Math.abs(r.std / expectedStd - 1), `round ${round} noise std ${r.std} vs ${expectedStd}`).toBeLessThan(0.06);
        expect(Math.abs(r.mean)).toBeLessThan((4 * expectedStd) / Math.sqrt(3008));
      }
      // Every checkpoint of a DP round carries the ledger; its ε is the accountant's for (q = 1, z, rounds).
      const versions = coordinator!.checkpoints().filter((c) => c.round > 0);
      expect(versions.map((c) => c.round)).toEqual([1, 2]);
      for (const c of versions) {
        const record = readPrivacyRecord(metaOf(c.version).extra);
        expect(record).not.toBeNull();
        expect(record!.rounds).toBe(c.round);
        expect(record!.epsilon).toBeCloseTo(accountantEpsilon(c.round), 10);
        expect(record!.perRound.map((p) => p.round)).toEqual([1, 2].slice(0, c.round));
        record!.perRound.forEach((p, k) => expect(p.epsilonSpent).toBeCloseTo(accountantEpsilon(k + 1), 10));
        expect(record!.perRound[0]!.epsilon).toBeCloseTo(accountantEpsilon(1), 10);
      }
      // The dashboard shows the same ε.
      const privacy = coordinator!.snapshot().experiment.privacy;
      expect(privacy).toMatchObject({ mode, noiseMultiplier: Z, clipNorm: C, delta: DELTA, epsilonBudget: null });
      expect(privacy!.epsilon).toBeCloseTo(accountantEpsilon(2), 10);
      expect(privacy!.perRound.map((p) => p.round)).toEqual([1, 2]);
    }, 90_000);
  }

  it('an ε budget stops the experiment before the round that would exceed it', async () => {
    const budget = (accountantEpsilon(2) + accountantEpsilon(3)) / 2; // two rounds fit, the third does not
    const { end, stopped } = await runDp({ mode: 'central', noiseMultiplier: Z, clipNorm: C, delta: DELTA, epsilonBudget: budget }, 5, 'dp-budget');
    expect(end.kind).toBe('stopped');
    expect(end.round).toBe(3);
    if (end.kind === 'stopped') expect(end.reason).toMatch(/privacy budget reached: round 3 would take ε from .* above the budget/);
    const event = await stopped;
    expect(event).toMatchObject({ round: 3 });
    expect(event!.reason).toMatch(/privacy budget/);
    // The last published model is round 2's, and its ledger is within the budget.
    const last = await coordinator!.globalWeights();
    expect(last.round).toBe(2);
    const record = readPrivacyRecord(metaOf(last.version).extra)!;
    expect(record.epsilon).toBeLessThanOrEqual(budget);
    expect(record.epsilonBudget).toBe(budget);
    // No round 3 was opened, so no site trained for it.
    for (const s of sites) expect(s.tasks.map((t) => t.round)).toEqual([1, 2]);
  }, 90_000);

  it('a restarted coordinator continues the privacy ledger from the last checkpoint', async () => {
    const dp: DpSpec = { mode: 'central', noiseMultiplier: Z, clipNorm: C, delta: DELTA };
    const first = await runDp(dp, 1, 'dp-restart');
    expect(first.end).toMatchObject({ kind: 'complete', round: 1 });
    await Promise.all(sites.map((s) => s.client.stop()));
    await coordinator!.stop();
    // Same state directory, one more round.
    const config = { ...fed!.config, experiment: { ...fed!.config.experiment, rounds: 2 } };
    coordinator = await startCoordinator(config, { baseDir: fed!.dir, initialWeights: () => fakeInitialWeights(MANIFEST), log: testLog() });
    sites = [...fed!.siteKeys.keys()].map((siteId) => startSite(fed!, coordinator!.url, siteId));
    expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: 2 });
    const last = await coordinator.globalWeights();
    const record = readPrivacyRecord(metaOf(last.version).extra)!;
    expect(record.rounds).toBe(2);
    expect(record.perRound.map((p) => p.round)).toEqual([1, 2]);
    expect(record.epsilon).toBeCloseTo(accountantEpsilon(2), 10);
  }, 90_000);
});
