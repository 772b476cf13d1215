/**
 * What leaves a site besides its update (README "What leaves a site"): a site whose config
 * withholds every optional report sends, on the wire, an update commit whose metrics are empty and
 * a site-info without backend, GPU, plan or budget; the coordinator aggregates its update all the
 * same and records nothing it was not sent. A site with the default config reports everything.
 */
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WITHHELD_REPORTS } from '../shared/config/site.ts';
import { CoordinatorClient } from '../site-agent/daemon/client.ts';
import { loadSiteConfig } from '../site-agent/site-config.ts';
import { MiB, fakeManifest, fakeMetrics, fakeUpdate, makeFederation, recordEmits, testLog, waitForEvent, type WireRecord, FederationHarness } from './federation-fixtures.ts';

const federation = new FederationHarness();
let clients: CoordinatorClient[] = [];

afterEach(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  clients = [];
});

const SITE_INFO = { backend: 'cpu', gpu: false, memoryBudgetMB: 96, patch: [16, 16, 16] as [number, number, number], batch: 1 };

/** The JSON payloads of every `type` message a site emitted. */
function sent(wire: WireRecord[], type: string): Record<string, unknown>[] {
  return wire.filter((w) => w.type === type).map((w) => JSON.parse(w.content!.at(-1)!.toString('utf8')) as Record<string, unknown>);
}

describe('a site config withholds optional reports', () => {
  it('site config: federation.withhold takes the report names and refuses unknown ones by name', () => {
    const fed = makeFederation({ sites: ['site-a'] });
    onTestFinished(() => fed.cleanup());
    const write = (withhold: unknown) => {
      const path = join(fed.dir, 'site.json');
      const federation = { coordinatorUrl: 'http://127.0.0.1:1', secretKey: 'k', publicKey: 'p', coordinatorPublicKey: 'c', withhold };
      writeFileSync(path, JSON.stringify({ siteId: 'site-a', dataset: 'data', memoryBudgetMB: 64, federation }));
      return path;
    };
    expect(loadSiteConfig(write(['dice', 'plan'])).federation?.withhold).toEqual(['dice', 'plan']);
    expect(() => loadSiteConfig(write(['dice', 'case-ids']))).toThrow(/federation\.withhold\.1/);
  });

  it('withheld reports never reach the wire or the coordinator; the update still counts', async () => {
    const { fed, coordinator } = await federation.start({ sites: ['site-a', 'site-b'], experiment: { rounds: 1 }, manifest: fakeManifest(2000) });
    const wires = new Map<string, WireRecord[]>();
    const completes: Promise<unknown>[] = [];
    for (const [index, id] of ['site-a', 'site-b'].entries()) {
      const wire: WireRecord[] = [];
      wires.set(id, wire);
      const client = new CoordinatorClient({
        url: coordinator.url,
        siteId: id,
        keys: fed.siteKeys.get(id)!,
        coordinatorPublicKey: fed.coordinatorKeys,
        chunkBytes: MiB,
        backoff: { initialMs: 100, maxMs: 400 },
        log: testLog(id),
        // site-a withholds everything it may; site-b (default config) reports everything.
        ...(id === 'site-a' ? { withhold: [...WITHHELD_REPORTS] } : {}),
        instrumentSocket: (socket) => recordEmits(socket, wire, undefined, true),
      });
      client.onTask(async (task) => ({ update: fakeUpdate(task.global, index, task.round), samples: 10, metrics: fakeMetrics(0.25) }));
      client.setSiteInfo(SITE_INFO);
      completes.push(waitForEvent(client, 'complete'));
      clients.push(client);
      client.start();
    }
    expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: 1 });
    await Promise.all(completes);

    // On the wire: site-a's commit carries the sample count and empty metrics; its site-info nothing but {}.
    const commitA = sent(wires.get('site-a')!, 'update-commit');
    expect(commitA).toHaveLength(1);
    expect(commitA[0]).toMatchObject({ samples: 10, metrics: {} });
    for (const info of sent(wires.get('site-a')!, 'site-info')) expect(info).toEqual({});
    const commitB = sent(wires.get('site-b')!, 'update-commit');
    expect(commitB[0]!.metrics).toEqual(fakeMetrics(0.25));
    expect(sent(wires.get('site-b')!, 'site-info')[0]).toEqual(SITE_INFO);

    // The coordinator aggregated both and recorded only what it was sent.
    const snap = coordinator.snapshot();
    expect(snap.rounds[0]!.siteLoss).toEqual({ 'site-a': null, 'site-b': 0.25 });
    const metricKinds = (siteId: string) => new Set(coordinator.db.listMetrics('fed-test', { siteId }).map((m) => m.kind));
    expect([...metricKinds('site-a')].sort()).toEqual(['bytes', 'samples']);
    expect(metricKinds('site-b')).toEqual(new Set(['bytes', 'samples', 'loss', 'time_ms', 'peak_memory_bytes', 'dice']));
    const siteA = snap.sites.find((s) => s.id === 'site-a')!;
    expect(siteA.roundsParticipated).toBe(1);
    expect(coordinator.db.getSite('site-a')).toMatchObject({ backend: null, plannedPatch: null, plannedBatch: null, memoryBudgetBytes: null });
    expect(coordinator.db.getSite('site-b')).toMatchObject({ backend: 'cpu', plannedPatch: [16, 16, 16], plannedBatch: 1, memoryBudgetBytes: 96 * MiB });
  }, 60_000);
});
