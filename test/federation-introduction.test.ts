/**
 * A site refuses round tasks until it has verified the signed experiment description, so the
 * coordinator must push that description before anything else on every session. The race this
 * guards: sites that finish authenticating in the same event-loop turn are all registered before
 * any of their "online" callbacks runs; the first callback can start the round and push tasks to
 * the others before their own callback has introduced them. (Seen with 32 sites under load: sites
 * answered "Round 1 task arrived before a verified experiment description".)
 *
 * The test lines the sites' final handshake messages up in one tick so they arrive together.
 */
import { describe, expect, it } from 'vitest';
import type { Socket } from 'socket.io-client';
import { CoordinatorClient } from '../site-agent/daemon/client.ts';
import { FederationHarness, MiB, fakeMetrics, fakeUpdate, testLog, type TestSite } from './federation-fixtures.ts';

const federation = new FederationHarness();
const SITES = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e', 'site-f'];

describe('session introduction', () => {
  it('every session receives the experiment description before its first round task, even when sites authenticate together', async () => {
    const { fed, coordinator } = await federation.start({ sites: SITES, experiment: { rounds: 1, minSites: SITES.length } });
    const held: (() => void)[] = [];
    const releaseWhenAllHeld = (): void => {
      if (held.length === SITES.length) for (const send of held.splice(0)) send();
    };
    const pushes = new Map<string, string[]>();
    const errors: string[] = [];

    for (const [index, siteId] of SITES.entries()) {
      const received: string[] = [];
      pushes.set(siteId, received);
      const site: TestSite = { id: siteId, client: null as unknown as CoordinatorClient, wire: [], received: [], socket: null, tasks: [] };
      const keys = fed.siteKeys.get(siteId);
      if (!keys) throw new Error(`no keys for ${siteId}`);
      site.client = new CoordinatorClient({
        url: coordinator.url,
        siteId,
        keys,
        coordinatorPublicKey: fed.coordinatorKeys,
        chunkBytes: MiB,
        backoff: { initialMs: 100, maxMs: 400 },
        log: testLog(siteId),
        instrumentSocket: (socket: Socket) => {
          site.socket = socket;
          socket.prependAny((type: string) => received.push(type));
          // Hold each site's authentication message until every site has one ready, then send all.
          const emit = socket.emit.bind(socket);
          let first = true;
          (socket as unknown as { emit: (type: string, ...args: unknown[]) => unknown }).emit = (type, ...args) => {
            if (type === 'auth' && first) {
              first = false;
              held.push(() => emit(type, ...(args as [])));
              releaseWhenAllHeld();
              return socket;
            }
            if (type === 'error') errors.push(`${siteId}: ${JSON.stringify(args[0])}`);
            return emit(type, ...(args as []));
          };
        },
      });
      site.client.onTask(async (task, ctl) => {
        site.tasks.push(task);
        ctl.progress(task.steps, task.steps);
        return { update: fakeUpdate(task.global, index, task.round), samples: 10, metrics: fakeMetrics() };
      });
      federation.track(site);
      site.client.start();
    }

    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 1 });
    expect(errors).toEqual([]);
    for (const siteId of SITES) {
      const received = pushes.get(siteId) ?? [];
      const firstTask = received.indexOf('round-task');
      expect(firstTask, `${siteId} received a round task`).toBeGreaterThanOrEqual(0);
      expect(received.indexOf('experiment'), `${siteId} got the experiment before its task: ${received.join(', ')}`).toBeGreaterThanOrEqual(0);
      expect(received.indexOf('experiment')).toBeLessThan(firstTask);
    }
  }, 120_000);
});
