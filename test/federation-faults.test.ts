/**
 * Faults the rounds must survive, with in-process sites over loopback socket.io and fake
 * (deterministic) training: a site that dies mid-round (the deadline closes the round with the
 * minimum), a round that misses its minimum (retried, and the kept update re-sent without
 * retraining), a site that comes back (it catches up on the latest checkpoint), and checkpoints
 * forged or corrupted on their way to a site (the site refuses them, the round goes on).
 */
import { describe, expect, it } from 'vitest';
import type { CoordinatorEvents } from '../coordinator/index.ts';
import type { ClientEvents, RoundTask } from '../site-agent/daemon/client.ts';
import {
  collect,
  fakeInitialWeights,
  fakeManifest,
  fakeMetrics,
  fakeUpdate,
  relativeError,
  waitForEvent,
  weightedMean,
  type TestSite,
  FederationHarness,
} from './federation-fixtures.ts';

/** ~80 KB models: these tests are about timing and faults, not volume (one chunk per transfer). */
const SMALL = fakeManifest(20_000);

const federation = new FederationHarness();

/** A handler that "dies" mid-training: the site's connection goes away and the work is abandoned. */
function dyingHandler(site: () => TestSite) {
  return async (task: RoundTask, ctl: { progress(d: number, t: number): void; signal: AbortSignal }) => {
    ctl.progress(1, task.steps);
    const abandoned = new Promise<never>((_, reject) => ctl.signal.addEventListener('abort', () => reject(new Error('killed')), { once: true }));
    void site().client.stop(); // aborts ctl.signal
    return abandoned;
  };
}

describe('federation faults', () => {
  it('a site dying mid-round does not block it (deadline + minSites); back online, it catches up on the latest checkpoint', async () => {
    const { coordinator } = await federation.start({ experiment: { rounds: 3, minSites: 2, roundDeadlineSeconds: 5 }, manifest: SMALL });
    const completes = collect<CoordinatorEvents['round-complete']>(coordinator.events, 'round-complete');
    const dropouts = collect<CoordinatorEvents['dropout']>(coordinator.events, 'dropout');
    const a = federation.addSite('site-a');
    federation.addSite('site-b');
    const c: TestSite = federation.addSite('site-c', { handler: dyingHandler(() => c) });

    const round1 = await waitForEvent<CoordinatorEvents['round-complete']>(coordinator.events, 'round-complete', (e) => e.round === 1);
    expect(round1.accepted).toEqual(['site-a', 'site-b']);
    // (On a very loaded machine an honest site can miss a deadline too; site-c always does.)
    expect(dropouts.some((d) => d.round === 1 && d.siteId === 'site-c')).toBe(true);
    expect(coordinator.state().onlineSites).toEqual(['site-a', 'site-b']);

    // site-c restarts (same keys, new client) and must get the checkpoint that is current then.
    const back = federation.addSite('site-c', { start: false });
    const latestAtFirstTask = new Promise<string>((resolve) => back.client.once('task', () => resolve(coordinator.checkpoints().at(-1)?.sha256 ?? '')));
    const backComplete = waitForEvent<ClientEvents['complete']>(back.client, 'complete');
    back.client.start();

    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 3 });
    const task = back.tasks[0]!;
    expect(task.checkpointSha256).toBe(await latestAtFirstTask); // the newest global model, not the one it left with
    expect(task.round).toBeGreaterThan(1);
    // It trained on it: its round's aggregate includes it, and it ends with the final model.
    expect(completes.find((e) => e.round === task.round)!.accepted).toContain('site-c');
    const final = await backComplete;
    expect(final.checkpointSha256).toBe((await coordinator.globalWeights()).sha256);
    // The round-1 global is the weighted mean of a and b only.
    const g0 = fakeInitialWeights(SMALL);
    const g1 = a.tasks.find((t) => t.round === 2)!.global;
    expect(relativeError(g1.values, weightedMean([0, 1].map((i) => ({ update: fakeUpdate(g0, i, 1), samples: 10 * (i + 1) }))))).toBeLessThan(1e-6);
  });

  it('a round that misses its minimum is retried with a clear event; the retry reuses the kept update', async () => {
    const { coordinator } = await federation.start({ sites: ['site-a', 'site-b'], experiment: { rounds: 1, minSites: 2, roundDeadlineSeconds: 4 }, manifest: SMALL });
    const failed = collect<CoordinatorEvents['round-failed']>(coordinator.events, 'round-failed');
    let trainedA = 0;
    federation.addSite('site-a', {
      handler: async (task) => {
        trainedA++;
        return { update: fakeUpdate(task.global, 0, task.round), samples: 10, metrics: fakeMetrics() };
      },
    });
    const b: TestSite = federation.addSite('site-b', { handler: dyingHandler(() => b) });
    const failure = await waitForEvent<CoordinatorEvents['round-failed']>(coordinator.events, 'round-failed');
    expect(failure).toMatchObject({ round: 1, attempt: 1 });
    expect(failure.message).toMatch(/accepted update\(s\), 2 needed/);

    federation.addSite('site-b');
    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 1 });
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(trainedA).toBe(1); // later attempts got site-a's kept update, not a retrained one
    const rounds = coordinator.db.listRounds('fed-test').filter((r) => r.round === 1);
    expect(rounds.map((r) => r.status)).toEqual([...failed.map(() => 'failed'), 'complete']);
    expect(rounds.at(-1)!.attempt).toBe(failed.length + 1);
    const g0 = fakeInitialWeights(SMALL);
    expect(relativeError((await coordinator.globalWeights()).weights.values, weightedMean([{ update: fakeUpdate(g0, 0, 1), samples: 10 }, { update: fakeUpdate(g0, 1, 1), samples: 20 }]))).toBeLessThan(1e-6);
  });

  it('sites refuse an altered round task or corrupted checkpoint content; the round completes without them', async () => {
    const { coordinator } = await federation.start({ experiment: { rounds: 2, minSites: 1, roundDeadlineSeconds: 5 }, manifest: SMALL });
    const siteErrors = collect<CoordinatorEvents['site-error']>(coordinator.events, 'site-error');
    const declines = collect<CoordinatorEvents['round-declined']>(coordinator.events, 'round-declined');
    const completes = collect<CoordinatorEvents['round-complete']>(coordinator.events, 'round-complete');
    federation.addSite('site-a');
    // site-b: a man in the middle (plaintext deployment) rewrites the steps of every task.
    const b = federation.addSite('site-b', {
      start: false,
      inbound: (type, payload) => {
        const p = payload as { steps?: number };
        if (type === 'round-task') p.steps = 5_000_000;
      },
    });
    // site-c: the announcement is genuine, but one byte of the downloaded content is flipped.
    const c = federation.addSite('site-c', {
      start: false,
      tamper: (type, args) => {
        if (type !== 'checkpoint-request') return args;
        const ack = args[args.length - 1] as ((err: unknown, reply: { type: string; payload: { data: Uint8Array } }) => void) & { withError?: boolean };
        const wrapped = Object.assign((err: unknown, reply: { type: string; payload: { data: Uint8Array } }) => {
          if (!err && reply?.type === 'checkpoint-chunk') {
            const d = reply.payload.data;
            d[d.length - 3] = d[d.length - 3]! ^ 0x10;
          }
          ack(err, reply);
        }, { withError: ack.withError });
        return [...args.slice(0, -1), wrapped];
      },
    });
    const bRefused = collect<ClientEvents['checkpoint-refused']>(b.client, 'checkpoint-refused');
    const cRefused = collect<ClientEvents['checkpoint-refused']>(c.client, 'checkpoint-refused');
    let trainedB = 0;
    let trainedC = 0;
    b.client.on('task', () => trainedB++);
    c.client.on('task', () => trainedC++);
    b.client.start();
    c.client.start();

    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 2 });
    expect(completes.map((e) => e.accepted)).toEqual([['site-a'], ['site-a']]);
    expect(bRefused).toEqual([]); // the task itself was refused before any download
    expect(cRefused.map((r) => [r.round, r.code])).toEqual([
      [1, 'checkpoint-hash-mismatch'],
      [2, 'checkpoint-hash-mismatch'],
    ]);
    // The handler never ran on an altered task or a refused checkpoint, and the coordinator was told why.
    expect(b.tasks).toHaveLength(0);
    expect(c.tasks).toHaveLength(0);
    expect(trainedB).toBe(0); // the altered tasks never became tasks
    expect(trainedC).toBe(2);
    expect(siteErrors.filter((e) => e.siteId === 'site-b' && e.code === 'control-bad-signature')).toHaveLength(2);
    // site-b cannot decline a task it never accepted: it reports the forged control message as an error.
    expect(declines.filter((d) => d.siteId === 'site-b')).toEqual([]);
    // site-c accepted the (genuine, signed) task, then refused the corrupted checkpoint: it declines
    // the round with the reason in a site-signed round-decline, so the round need not wait for it.
    expect(declines.filter((d) => d.siteId === 'site-c').map((d) => [d.round, d.code])).toEqual([
      [1, 'checkpoint-hash-mismatch'],
      [2, 'checkpoint-hash-mismatch'],
    ]);
    for (const d of declines) expect(d.message).toMatch(/Checkpoint v\d+ refused: .*hash/i);
  });
});
