/**
 * One compromised site under the default config (issue 11 item 3): an update of all weights =
 * 3e38 claiming 1e6 samples. The defaults refuse the claim and the update (sample cap, update
 * norm ratio); with those checks off, the guard on the aggregate still refuses to sign a model
 * whose norm explodes. Either way no checkpoint with a non-finite or exploded weight is ever
 * signed, and the honest sites keep the federation going.
 */
import { describe, expect, it } from 'vitest';
import type { CoordinatorEvents, RunningCoordinator } from '../coordinator/index.ts';
import { decodeWeightsFile } from '../shared/codec/index.ts';
import type { NamedWeights } from '../shared/weights.ts';
import { existsSync, readdirSync } from 'node:fs';
import { deriveSharedKey } from '../shared/crypto/seal.ts';
import { UpdateSender } from '../shared/protocol/transfer.ts';
import { socketRequester } from '../shared/protocol/transport.ts';
import { collect, fakeManifest, fakeMetrics, fakeUpdate, FederationHarness, MiB, type TestSite } from './federation-fixtures.ts';

const SMALL = fakeManifest(20_000);
const federation = new FederationHarness();

function poisoned(global: NamedWeights): NamedWeights {
  return { manifest: global.manifest, values: global.values.map((v) => new Float32Array(v.length).fill(3e38)) };
}

async function everyCheckpointIsSane(c: RunningCoordinator): Promise<number> {
  let maxAbs = 0;
  for (const cp of c.checkpoints()) {
    const w = await decodeWeightsFile(`${federation.fed.dir}/state/checkpoints/v${String(cp.version).padStart(6, '0')}/weights.pfw`);
    for (const v of w.values) for (const x of v) maxAbs = Math.max(maxAbs, Math.abs(x));
  }
  return maxAbs;
}

describe('a poisoned update under the default config', () => {
  it('is refused (sample claim, then update norm), and the next rounds complete with the honest sites', async () => {
    const { coordinator } = await federation.start({ experiment: { rounds: 2, minSites: 2, roundDeadlineSeconds: 10 }, manifest: SMALL });
    const rejected = collect<CoordinatorEvents['update-rejected']>(coordinator.events, 'update-rejected');
    const completes = collect<CoordinatorEvents['round-complete']>(coordinator.events, 'round-complete');
    let attempts = 0;
    federation.addSite('site-a');
    federation.addSite('site-b');
    federation.addSite('site-c', {
      handler: async (task) => {
        attempts++;
        // First a plausible update with a huge sample claim, then a modest claim with exploded weights.
        if (task.round === 1) return { update: fakeUpdate(task.global, 2, task.round), samples: 1_000_000, metrics: fakeMetrics() };
        return { update: poisoned(task.global), samples: 10, metrics: fakeMetrics() };
      },
    });
    expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: 2 });
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(completes.map((e) => e.accepted)).toEqual([['site-a', 'site-b'], ['site-a', 'site-b']]);
    const reasons = rejected.filter((r) => r.siteId === 'site-c').map((r) => `${r.round}:${r.code}`);
    expect(reasons).toEqual(['1:invalid-update', '2:update-norm-exceeded']);
    expect(rejected.find((r) => r.round === 1)?.message).toMatch(/claims 1000000 training samples, more than the limit of 100000/);
    expect(await everyCheckpointIsSane(coordinator)).toBeLessThan(10);
  });

  it('with the update checks off, the aggregate guard refuses to sign the exploded model; the last good checkpoint stays current', async () => {
    const { coordinator } = await federation.start({ experiment: { rounds: 1, minSites: 2, startupGraceSeconds: 0, roundDeadlineSeconds: 4, maxRoundAttempts: 1, maxUpdateNormRatio: 0, maxSamplesPerSite: 10_000_000 }, manifest: SMALL });
    const failed = collect<CoordinatorEvents['round-failed']>(coordinator.events, 'round-failed');
    federation.addSite('site-a', { handler: async (task) => ({ update: fakeUpdate(task.global, 0, task.round), samples: 10, metrics: fakeMetrics() }) });
    federation.addSite('site-b', { handler: async (task) => ({ update: poisoned(task.global), samples: 1_000_000, metrics: fakeMetrics() }) });
    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'stopped' });
    expect(failed[0]?.reason).toMatch(/aggregate-norm-jump|L2 norm .* over the limit of 5×/);
    expect(coordinator.checkpoints().map((c) => c.version)).toEqual([1]); // only the initial model was ever signed
    expect((await coordinator.globalWeights()).version).toBe(1);
    expect(await everyCheckpointIsSane(coordinator)).toBeLessThan(10);
  });

  it('refuses an upload whose announced size is not the model\'s encoded size, before storing a byte', async () => {
    const { fed, coordinator } = await federation.start({ experiment: { rounds: 1, minSites: 1, startupGraceSeconds: 0, roundDeadlineSeconds: 10 }, manifest: SMALL });
    const rejected = collect<CoordinatorEvents['update-rejected']>(coordinator.events, 'update-rejected');
    let partsDuringRefusal: string[] | null = null;
    const oversize: TestSite = federation.addSite('site-a', {
      handler: async (task) => {
        const keys = fed.siteKeys.get('site-a')!;
        const payload = new Uint8Array(8 * MiB); // announced as 8 MiB for an ~80 KB model
        const sender = new UpdateSender({ payload, round: task.round, siteId: 'site-a', keys: { sharedKey: deriveSharedKey(fed.coordinatorKeys.boxPublicKey, keys.boxSecretKey), signSecretKey: keys.signSecretKey }, chunkBytes: MiB });
        await expect(sender.upload(socketRequester(oversize.socket!), { samples: 10, metrics: fakeMetrics() })).rejects.toMatchObject({ code: 'update-wrong-size' });
        const uploads = `${fed.dir}/state/uploads`;
        partsDuringRefusal = existsSync(uploads) ? readdirSync(uploads) : [];
        return { update: fakeUpdate(task.global, 0, task.round), samples: 10, metrics: fakeMetrics() };
      },
    });
    federation.addSite('site-b');
    expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: 1 });
    expect(partsDuringRefusal).toEqual([]);
    expect(rejected.find((r) => r.siteId === 'site-a')?.message).toMatch(/announced a 8388608-byte (weights )?update; this experiment's model encodes to exactly \d+ bytes/);
  });
});
