/**
 * Real federated training in one process: three sites, each a FederatedSiteTrainer on its own
 * tiny liver phantom (own scanner style, case count and memory budget), connected to the
 * coordinator over loopback socket.io. Checks that
 *  - sites with different budgets train the same model with different patch sizes, and the
 *    global model is the sample-weighted mean of their real updates;
 *  - no data leaves a site: a unique voxel pattern planted in each site's first training image
 *    appears in no message in either direction, nor in the plaintext of any update; sites send
 *    only protocol message types, and per round about one encrypted model plus a little control.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import { encodeWeights, encodedWeightsSize } from '../shared/codec/index.ts';
import { SEAL_OVERHEAD_BYTES } from '../shared/crypto/seal.ts';
import { SITE_MESSAGE_TYPES } from '../shared/protocol/messages.ts';
import { SiteConfigSchema } from '../shared/config/site.ts';
import type { NamedWeights } from '../shared/weights.ts';
import { parseBackendChoice, selectBackend, type BackendReport } from '../site-agent/backend/index.ts';
import type { ClientEvents } from '../site-agent/daemon/client.ts';
import { generatePhantomDataset, type PlantedMarker } from '../site-agent/phantom/index.ts';
import { FederatedSiteTrainer } from '../site-agent/run/federated-site.ts';
import { experimentLayout, initialGlobalWeights } from '../shared/model/index.ts';
import { MiB, makeFederation, relativeError, startSite, testLog, waitForEvent, weightedMean, type Federation, type TestSite, tinyLiverExperiment } from './federation-fixtures.ts';

const SITES = [
  { id: 'site-a', cases: 4, budgetMB: 60, marker: 12345 },
  { id: 'site-b', cases: 5, budgetMB: 90, marker: -23456 },
  { id: 'site-c', cases: 6, budgetMB: 140, marker: 31234 },
];
const ROUNDS = 2;

let fed: Federation;
let coordinator: RunningCoordinator;
let backend: BackendReport;
const sites: TestSite[] = [];
const trainers: FederatedSiteTrainer[] = [];
const markers = new Map<string, PlantedMarker>();
/** Per site and round: the update it returned (copied), its sample count, patch, and plaintext. */
const updates = new Map<string, { update: NamedWeights; samples: number; patch: number[]; plaintext: Uint8Array }>();
const completes = new Map<string, ClientEvents['complete']>();
const taskTimes = new Map<string, number[]>();

beforeAll(async () => {
  fed = makeFederation({
    sites: SITES.map((s) => s.id),
    experiment: tinyLiverExperiment({ rounds: ROUNDS, minSites: 3 }),
  });
  backend = await selectBackend(parseBackendChoice('auto'), () => {});
  const exp = fed.config.experiment;
  coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, initialWeights: () => initialGlobalWeights(experimentLayout(exp), exp.seed), log: testLog() });

  for (const [i, spec] of SITES.entries()) {
    const phantom = await generatePhantomDataset({ task: 'liver', cases: spec.cases, testCases: 0, shape: [24, 24, 16], seed: 100 + i, siteStyle: i, out: join(fed.dir, `${spec.id}-data`), marker: spec.marker });
    markers.set(spec.id, phantom.marker!);
    const cfg = SiteConfigSchema.parse({ siteId: spec.id, dataset: phantom.dir, memoryBudgetMB: spec.budgetMB, cacheMB: 32, seed: 1 + i });
    const trainer = new FederatedSiteTrainer(cfg, backend);
    trainers.push(trainer);
    taskTimes.set(spec.id, []);
    const site = startSite(fed, coordinator.url, spec.id, {
      keepContent: true,
      handler: async (task, ctl) => {
        await trainer.prepare(task.experiment);
        const out = await trainer.runRound({
          round: task.round,
          steps: task.steps,
          global: task.global,
          fit: task.fit,
          learningRate: task.experiment.learningRate,
          signal: ctl.signal,
          onProgress: (done, total, phase) => ctl.progress(done, total, phase),
        });
        const copy = { manifest: out.update.manifest, values: out.update.values.map((v) => Float32Array.from(v)) };
        updates.set(`${spec.id}:${task.round}`, { update: copy, samples: out.samples, patch: [...out.metrics.patch], plaintext: encodeWeights(copy) });
        return out;
      },
    });
    site.client.on('task', () => taskTimes.get(spec.id)!.push(Date.now()));
    void waitForEvent<ClientEvents['complete']>(site.client, 'complete', () => true, 170_000).then((c) => completes.set(spec.id, c));
    sites.push(site);
  }
  await coordinator.finished;
  const deadline = Date.now() + 20_000;
  while (completes.size < SITES.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}, 180_000);

afterAll(async () => {
  await Promise.all(sites.map((s) => s.client.stop()));
  await coordinator?.stop();
  for (const t of trainers) t.dispose();
  fed?.cleanup();
});

/** Does `needle` occur in any of `haystacks`? */
function occursIn(needle: Buffer, haystacks: Iterable<Buffer | Uint8Array>): boolean {
  for (const h of haystacks) if (Buffer.from(h.buffer, h.byteOffset, h.byteLength).indexOf(needle) >= 0) return true;
  return false;
}

describe('federated training with real site trainers', () => {
  it('sites with different memory budgets train different patch sizes, and the global model is the sample-weighted mean of their updates', async () => {
    expect(coordinator.state().end).toMatchObject({ kind: 'complete', round: ROUNDS });
    const patches = SITES.map((s) => updates.get(`${s.id}:1`)!.patch.join('x'));
    expect(new Set(patches).size).toBeGreaterThanOrEqual(2);
    // The larger budget never gets the smaller patch.
    const voxels = SITES.map((s) => updates.get(`${s.id}:1`)!.patch.reduce((a, b) => a * b, 1));
    expect(voxels[2]!).toBeGreaterThanOrEqual(voxels[0]!);
    expect(new Set(SITES.map((s) => updates.get(`${s.id}:1`)!.samples)).size).toBeGreaterThan(1);

    const finalWeights = (await coordinator.globalWeights()).weights;
    const globalAfter = (round: number): NamedWeights => (round < ROUNDS ? sites[0]!.tasks.find((t) => t.round === round + 1)!.global : finalWeights);
    for (let round = 1; round <= ROUNDS; round++) {
      const contributions = SITES.map((s) => updates.get(`${s.id}:${round}`)!);
      const expected = weightedMean(contributions);
      expect(relativeError(globalAfter(round).values, expected)).toBeLessThan(1e-6);
      // The sites really moved the model (so the check above is not trivially about the input).
      const before = sites[0]!.tasks.find((t) => t.round === round)!.global;
      expect(relativeError(before.values, expected)).toBeGreaterThan(1e-5);
    }
    const final = (await coordinator.globalWeights()).sha256;
    expect([...completes.values()].map((c) => c.checkpointSha256)).toEqual(SITES.map(() => final));
  });

  it('no image or label data leaves a site: planted voxel patterns appear nowhere on the wire or in any update', () => {
    const allTraffic = sites.flatMap((s) => [...s.wire, ...s.received].flatMap((w) => w.content ?? []));
    const plaintexts = [...updates.values()].map((u) => u.plaintext);
    expect(allTraffic.length).toBeGreaterThan(50);
    for (const [id, marker] of markers) {
      // The search does find the pattern where it is: in the site's own image file.
      const file = readFileSync(marker.file);
      expect(occursIn(marker.bytes, [marker.file.endsWith('.gz') ? gunzipSync(file) : file]), `${id} marker in its image`).toBe(true);
      const asFloat32 = Buffer.alloc(4 * marker.count);
      for (let i = 0; i < marker.count; i++) asFloat32.writeFloatLE(marker.value, 4 * i);
      for (const needle of [marker.bytes, asFloat32]) {
        expect(occursIn(needle, allTraffic), `${id} marker on the wire`).toBe(false);
        expect(occursIn(needle, plaintexts), `${id} marker in an update`).toBe(false);
      }
      // Nor do case ids or file names.
      const caseId = Buffer.from(marker.caseId, 'utf8');
      expect(occursIn(caseId, sites.flatMap((s) => s.wire.flatMap((w) => w.content ?? [])))).toBe(false);
    }
  });

  it('sites send only protocol message types, and per round about one encrypted model', async () => {
    const encoded = encodedWeightsSize((await coordinator.globalWeights()).weights.manifest);
    const encryptedModel = encoded + Math.ceil(encoded / MiB) * SEAL_OVERHEAD_BYTES;
    for (const s of sites) {
      for (const t of new Set(s.wire.map((w) => w.type))) expect(SITE_MESSAGE_TYPES as readonly string[]).toContain(t);
      const times = taskTimes.get(s.id)!;
      expect(times).toHaveLength(ROUNDS);
      for (let r = 0; r < ROUNDS; r++) {
        const inRound = s.wire.filter((w) => w.at >= times[r]! && (r + 1 === ROUNDS || w.at < times[r + 1]!));
        const bytes = inRound.reduce((n, w) => n + w.bytes, 0);
        const chunks = inRound.filter((w) => w.type === 'update-chunk').reduce((n, w) => n + w.bytes, 0);
        expect(chunks).toBeGreaterThanOrEqual(encryptedModel); // the whole update went out, encrypted...
        expect(bytes - encryptedModel).toBeLessThan(8 * 1024); // ...plus a few KB of control messages, nothing else
      }
    }
  });
});
