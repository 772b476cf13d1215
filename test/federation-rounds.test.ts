/**
 * Coordinator + three in-process site clients over loopback socket.io, with fake (deterministic)
 * training: the FedAvg arithmetic end to end, the same final checkpoint at every site, the
 * dashboard view of it, and what the sites put on the wire.
 */
import { describe, expect, it } from 'vitest';
import { encodedWeightsSize } from '../shared/codec/index.ts';
import { sha256Hex } from '../shared/crypto/encoding.ts';
import { encodeWeights } from '../shared/codec/index.ts';
import { SEAL_OVERHEAD_BYTES } from '../shared/crypto/seal.ts';
import { SITE_MESSAGE_TYPES } from '../shared/protocol/messages.ts';
import type { NamedWeights } from '../shared/weights.ts';

import type { DashboardRoundSite } from '../coordinator/dashboard/types.ts';
import type { ClientEvents } from '../site-agent/daemon/client.ts';
import {
  MiB,
  fakeManifest,
  fakeMetrics,
  fakeUpdate,
  relativeError,
  waitForEvent,
  weightedMean,
  FederationHarness,
} from './federation-fixtures.ts';

const federation = new FederationHarness();

describe('federation rounds', () => {
  it('three sites, two rounds: sample-weighted mean, same final checkpoint everywhere, only site messages within the byte budget', async () => {
    const { fed, coordinator } = await federation.start({ experiment: { rounds: 2 } });
    const ids = [...fed.siteKeys.keys()];
    const completes = new Map<string, ClientEvents['complete']>();
    const taskTimes = new Map<string, number[]>();
    const sites = ids.map((id) => federation.addSite(id));
    const allComplete = Promise.all(
      sites.map((s) => {
        taskTimes.set(s.id, []);
        s.client.on('task', () => taskTimes.get(s.id)!.push(Date.now()));
        return waitForEvent<ClientEvents['complete']>(s.client, 'complete').then((c) => completes.set(s.id, c));
      }),
    );
    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 2 });
    await allComplete;

    // Every site trained each round on the same global model.
    for (const round of [1, 2]) {
      const shas = sites.map((s) => s.tasks.find((t) => t.round === round)!.checkpointSha256);
      expect(new Set(shas).size).toBe(1);
    }
    // The global after round r is the sample-weighted mean of the three updates of round r.
    const globalAfter = (round: number): NamedWeights => (round < 2 ? sites[0]!.tasks.find((t) => t.round === round + 1)!.global : completes.get(ids[0]!)!.global);
    for (const round of [1, 2]) {
      const before = sites[0]!.tasks.find((t) => t.round === round)!.global;
      const expected = weightedMean(ids.map((_, i) => ({ update: fakeUpdate(before, i, round), samples: 10 * (i + 1) })));
      expect(relativeError(globalAfter(round).values, expected)).toBeLessThan(1e-6);
      // ...and not the unweighted mean (the weights matter in this setup).
      const unweighted = weightedMean(ids.map((_, i) => ({ update: fakeUpdate(before, i, round), samples: 1 })));
      expect(relativeError(globalAfter(round).values, unweighted)).toBeGreaterThan(1e-3);
    }
    // All sites end with the coordinator's final checkpoint.
    const final = (await coordinator.globalWeights());
    expect(final.round).toBe(2);
    for (const id of ids) {
      expect(completes.get(id)!.checkpointSha256).toBe(final.sha256);
      expect(sha256Hex(encodeWeights(completes.get(id)!.global))).toBe(final.sha256);
    }
    expect(coordinator.checkpoints().map((c) => c.round)).toEqual([0, 1, 2]);

    // Privacy instrumentation: only site message types, and per round about one encrypted model.
    const manifest = fakeManifest();
    const encoded = encodedWeightsSize(manifest);
    const encryptedModel = encoded + Math.ceil(encoded / MiB) * SEAL_OVERHEAD_BYTES;
    for (const s of sites) {
      const types = new Set(s.wire.map((w) => w.type));
      for (const t of types) expect(SITE_MESSAGE_TYPES as readonly string[]).toContain(t);
      expect(types.has('update-chunk')).toBe(true);
      const [t1, t2] = taskTimes.get(s.id)!;
      expect(t2).toBeDefined();
      const perRound = [s.wire.filter((w) => w.at < t2!), s.wire.filter((w) => w.at >= t2!)].map((ws) => ws.reduce((n, w) => n + w.bytes, 0));
      expect(t1).toBeLessThanOrEqual(t2!);
      for (const bytes of perRound) {
        expect(bytes).toBeGreaterThan(encoded); // the update really went out...
        expect(bytes).toBeLessThanOrEqual(encryptedModel * 1.1 + 16 * 1024); // ...and nothing much else
      }
    }

    // Dashboard view and DB records.
    const snap = coordinator.snapshot();
    expect(snap.rounds.map((r) => r.round)).toEqual([1, 2]);
    expect(snap.sites.map((s) => [s.id, s.roundsParticipated, s.online])).toEqual(ids.map((id) => [id, 2, true]));
    expect(snap.checkpoints.every((c) => c.signatureValid)).toBe(true);
    expect(snap.rounds[0]!.siteLoss).toEqual(Object.fromEntries(ids.map((id) => [id, 0.5])));
    expect(snap.rounds[1]!.bytesMoved).toBeGreaterThan(3 * encoded);
    expect(coordinator.db.listMetrics('fed-test', { kind: 'loss' })).toHaveLength(6);

    const health = await fetch(`${coordinator.url}/healthz`).then((r) => r.json());
    expect(health).toMatchObject({ ok: true, experiment: 'fed-test', lastCompletedRound: 2, end: 'complete' });
    expect((await fetch(`${coordinator.url}/api/snapshot`)).status).toBe(401);
    const api = await fetch(`${coordinator.url}/api/snapshot`, { headers: { authorization: `Bearer ${fed.config.dashboardToken}` } });
    expect(api.status).toBe(200);
    expect((await api.json()).rounds).toHaveLength(2);
  });
});

describe('round progress on the dashboard', () => {
  it('a site fetching the checkpoint shows as downloading (bytes, no steps), then evaluating, training N/M and uploading', async () => {
    const { fed, coordinator } = await federation.start({ experiment: { rounds: 1 } });
    const ids = [...fed.siteKeys.keys()];
    const watched = ids[0]!;
    // What the dashboard would show for the watched site right after each of its status reports.
    const views: (Pick<DashboardRoundSite, 'state' | 'stepsDone' | 'stepsTotal' | 'downloadedBytes' | 'downloadTotalBytes'> & { phase?: string; sentSteps: number })[] = [];
    coordinator.events.on('site-status', (p: { siteId: string; phase?: string; stepsDone: number }) => {
      if (p.siteId !== watched) return;
      const s = coordinator.snapshot().currentRound?.sites.find((x) => x.id === watched);
      if (s) views.push({ phase: p.phase, sentSteps: p.stepsDone, state: s.state, stepsDone: s.stepsDone, stepsTotal: s.stepsTotal, downloadedBytes: s.downloadedBytes, downloadTotalBytes: s.downloadTotalBytes });
    });
    for (const [i, id] of ids.entries()) {
      federation.addSite(id, {
        handler: async (task, ctl) => {
          // Like the real trainer: evaluate the received global model, then train.
          ctl.progress(0, task.steps, 'evaluating');
          ctl.progress(task.steps, task.steps, 'training');
          return { update: fakeUpdate(task.global, i, task.round), samples: 10, metrics: fakeMetrics() };
        },
      });
    }
    expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: 1 });

    const size = coordinator.snapshot().checkpoints.find((c) => c.round === 0)!.sizeBytes;
    const steps = fed.config.experiment.localSteps;
    expect(size).toBeGreaterThan(0);
    const downloading = views.filter((v) => v.phase === 'downloading');
    expect(downloading.length).toBeGreaterThanOrEqual(2); // start (0 bytes) and end (all bytes)
    // The bug this guards against: the download's bytes mapped onto the steps bar ("training 4/4").
    for (const v of downloading) expect(v).toMatchObject({ sentSteps: 0, state: 'downloading', stepsDone: 0, stepsTotal: steps, downloadTotalBytes: size });
    expect(downloading[0]!.downloadedBytes).toBe(0);
    expect(downloading.at(-1)!.downloadedBytes).toBe(size);
    const after = views.slice(views.indexOf(downloading.at(-1)!) + 1);
    expect(after.find((v) => v.phase === 'evaluating')).toMatchObject({ state: 'evaluating', stepsDone: 0, downloadedBytes: size });
    expect(after.filter((v) => v.phase === 'training').at(-1)).toMatchObject({ state: 'training', stepsDone: steps, stepsTotal: steps });
    expect(after.at(-1)).toMatchObject({ phase: 'uploading', state: 'uploading' });
    expect(views.map((v) => v.phase).indexOf('evaluating')).toBeGreaterThan(views.map((v) => v.phase).lastIndexOf('downloading'));
  });
});
