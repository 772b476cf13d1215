/**
 * What the coordinator refuses: unknown or wrong keys, messages before authentication, hostile
 * payloads, a tampered update chunk, a NaN update and a replayed upload from a previous round —
 * while the rounds go on with the honest sites.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import { encodeWeights } from '../shared/codec/index.ts';
import { generateKeyPairs } from '../shared/crypto/keys.ts';
import { deriveSharedKey } from '../shared/crypto/seal.ts';
import { UpdateSender } from '../shared/protocol/transfer.ts';
import { socketRequester } from '../shared/protocol/transport.ts';
import type { NamedWeights } from '../shared/weights.ts';
import { startCoordinator, type CoordinatorEvents, type RunningCoordinator } from '../coordinator/index.ts';
import { CoordinatorClient, type ClientEvents } from '../site-agent/daemon/client.ts';
import {
  MiB,
  collect,
  fakeInitialWeights,
  fakeMetrics,
  fakeUpdate,
  makeFederation,
  relativeError,
  startSite,
  waitForEvent,
  weightedMean,
  type Federation,
  type TestSite,
} from './federation-fixtures.ts';

let fed: Federation | null = null;
let coordinator: RunningCoordinator | null = null;
let sites: TestSite[] = [];
const extraClients: CoordinatorClient[] = [];
const rawSockets: Socket[] = [];

afterEach(async () => {
  for (const s of rawSockets.splice(0)) s.disconnect();
  await Promise.all([...sites.map((s) => s.client.stop()), ...extraClients.splice(0).map((c) => c.stop())]);
  await coordinator?.stop();
  fed?.cleanup();
  fed = null;
  coordinator = null;
  sites = [];
});

function rawSocket(url: string): Promise<Socket> {
  const socket = connect(url, { transports: ['websocket'], reconnection: false, forceNew: true });
  rawSockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

function closed(socket: Socket): Promise<string> {
  return new Promise((resolve) => (socket.disconnected ? resolve('already') : socket.once('disconnect', (reason) => resolve(reason))));
}

describe('federation security', () => {
  it('refuses unknown sites, wrong keys and an impostor coordinator; drops unauthenticated and hostile traffic', async () => {
    fed = makeFederation({ sites: ['site-a'], experiment: { rounds: 1, startupGraceSeconds: 600, minSites: 1 }, limits: { handshakeTimeoutSeconds: 1 } });
    // Hold the round back: nothing in this test needs training.
    coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, initialWeights: () => fakeInitialWeights() });
    const refusals = collect<CoordinatorEvents['auth-failed']>(coordinator.events, 'auth-failed');
    const online = collect<CoordinatorEvents['site-online']>(coordinator.events, 'site-online');

    const mk = (siteId: string, keys = generateKeyPairs(), coordinatorPublicKey = fed!.coordinatorKeys) => {
      const c = new CoordinatorClient({ url: coordinator!.url, siteId, keys, coordinatorPublicKey, backoff: { initialMs: 100, maxMs: 200 } });
      extraClients.push(c);
      return c;
    };
    // A site id nobody enrolled.
    const stranger = mk('site-x');
    const strangerFailed = waitForEvent<ClientEvents['auth-failed']>(stranger, 'auth-failed');
    stranger.start();
    expect((await strangerFailed).code).toBe('unknown-site');
    // An enrolled id with a key that is not the enrolled one.
    const thief = mk('site-a');
    const thiefFailed = waitForEvent<ClientEvents['auth-failed']>(thief, 'auth-failed');
    thief.start();
    expect((await thiefFailed).code).toBe('handshake-bad-signature');
    // The real site, but it pins another coordinator key: it refuses to authenticate.
    const misled = mk('site-a', fed.siteKeys.get('site-a')!, generateKeyPairs());
    const misledFailed = waitForEvent<ClientEvents['auth-failed']>(misled, 'auth-failed');
    misled.start();
    expect((await misledFailed).code).toBe('coordinator-key-mismatch');
    await stranger.stop();
    await thief.stop();
    await misled.stop();

    expect(refusals.some((r) => r.siteId === 'site-x' && r.code === 'unknown-site')).toBe(true);
    expect(refusals.some((r) => r.siteId === 'site-a' && r.code === 'handshake-bad-signature')).toBe(true);
    expect(online).toHaveLength(0);
    expect(coordinator.db.listEvents({ kind: 'enrol-refused' }).length).toBeGreaterThanOrEqual(2);

    // Before authentication only hello/auth: anything else is refused and the connection closed.
    const early = await rawSocket(coordinator.url);
    const earlyClosed = closed(early);
    const reply = await early.timeout(5000).emitWithAck('update-begin', { transferId: 'x'.repeat(20), round: 1, totalBytes: 10, chunkBytes: MiB, chunkCount: 1, sha256: 'a'.repeat(64) });
    expect(reply).toMatchObject({ type: 'error', payload: { code: 'not-authenticated' } });
    await earlyClosed;
    // Hostile payloads get error replies and the connection survives; silence past the handshake timeout ends it.
    const hostile = await rawSocket(coordinator.url);
    const hostileClosed = closed(hostile);
    expect(await hostile.timeout(5000).emitWithAck('hello', { protocolVersion: 1, siteId: '../../etc', agentVersion: 'x', extra: 1 })).toMatchObject({ type: 'error', payload: { code: 'bad-message' } });
    expect(await hostile.timeout(5000).emitWithAck('hello', 'a'.repeat(100_000))).toMatchObject({ type: 'error' });
    expect(await hostile.timeout(5000).emitWithAck('no-such-type', {})).toMatchObject({ type: 'error', payload: { code: 'unknown-message-type' } });
    hostile.emit('error', { code: 'x', message: 'y' }); // a site 'error' event without a listener must not crash anything
    expect(await hostile.timeout(5000).emitWithAck('hello', { protocolVersion: 1, siteId: 'site-a', agentVersion: '1' })).toMatchObject({ type: 'challenge' });
    await hostileClosed; // handshake timeout (1 s)

    // The coordinator is still healthy and the genuine site gets in.
    sites.push(startSite(fed, coordinator.url, 'site-a', { start: false }));
    const connected = waitForEvent(sites[0]!.client, 'connected');
    sites[0]!.client.start();
    await connected;
    expect(coordinator.state().onlineSites).toEqual(['site-a']);
  });

  it('rejects a tampered chunk and a NaN update, ignores a replayed upload, and completes the rounds with the honest updates', async () => {
    fed = makeFederation({ experiment: { rounds: 2, minSites: 2 } });
    coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, initialWeights: () => fakeInitialWeights() });
    const ids = [...fed.siteKeys.keys()]; // site-a, site-b, site-c
    const rejected = collect<CoordinatorEvents['update-rejected']>(coordinator.events, 'update-rejected');
    const ignored = collect<CoordinatorEvents['update-ignored']>(coordinator.events, 'update-ignored');
    const completed = collect<CoordinatorEvents['round-complete']>(coordinator.events, 'round-complete');
    const samples = (i: number) => 10 * (i + 1);
    const globals = new Map<number, NamedWeights>();

    // site-a: records its round-1 upload messages and replays them during round 2.
    const captured: [string, unknown][] = [];
    let replayReplies: unknown[] = [];
    const siteA = startSite(fed, coordinator.url, 'site-a', {
      tamper: (type, args) => {
        if (type.startsWith('update-') && captured.length < 100) captured.push([type, args[0]]);
        return args;
      },
      handler: async (task) => {
        globals.set(task.round, task.global);
        if (task.round === 2) {
          const round1 = captured.splice(0);
          replayReplies = [];
          for (const [type, payload] of round1) replayReplies.push(await siteA.socket!.timeout(5000).emitWithAck(type, payload));
        }
        return { update: fakeUpdate(task.global, 0, task.round), samples: samples(0), metrics: fakeMetrics() };
      },
    });
    // site-b: in round 2 it bypasses the client and uploads an update containing NaN.
    const siteB = startSite(fed, coordinator.url, 'site-b', {
      handler: async (task) => {
        if (task.round === 2) {
          const payload = encodeWeights(fakeUpdate(task.global, 1, 2));
          new DataView(payload.buffer, payload.byteOffset).setFloat32(payload.length - 4, NaN, true);
          const keys = fed!.siteKeys.get('site-b')!;
          const sender = new UpdateSender({ payload, round: 2, siteId: 'site-b', keys: { sharedKey: deriveSharedKey(fed!.coordinatorKeys.boxPublicKey, keys.boxSecretKey), signSecretKey: keys.signSecretKey }, chunkBytes: MiB });
          await expect(sender.upload(socketRequester(siteB.socket!), { samples: 20, metrics: fakeMetrics() })).rejects.toMatchObject({ code: 'weights-not-finite' });
        }
        return { update: fakeUpdate(task.global, 1, task.round), samples: samples(1), metrics: fakeMetrics() };
      },
    });
    // site-c: one flipped ciphertext byte in its first round-1 chunk.
    let flipped = false;
    const siteC = startSite(fed, coordinator.url, 'site-c', {
      tamper: (type, args) => {
        const p = args[0] as { index?: number; ciphertext?: Uint8Array };
        if (type === 'update-chunk' && !flipped && p.index === 0) {
          flipped = true;
          const ciphertext = Uint8Array.from(p.ciphertext!);
          ciphertext[100] = ciphertext[100]! ^ 0x01;
          return [{ ...p, ciphertext }, ...args.slice(1)];
        }
        return args;
      },
    });
    sites = [siteA, siteB, siteC];
    const cRejected = waitForEvent<ClientEvents['rejected']>(siteC.client, 'rejected');
    const bRejected = waitForEvent<ClientEvents['rejected']>(siteB.client, 'rejected');

    const end = await coordinator.finished;
    expect(end).toMatchObject({ kind: 'complete', round: 2 });
    expect(await cRejected).toMatchObject({ round: 1, code: 'chunk-bad-signature' });
    expect(await bRejected).toMatchObject({ round: 2, code: 'update-rejected' });

    expect(rejected.map((r) => [r.round, r.siteId, r.code])).toEqual([
      [1, 'site-c', 'chunk-bad-signature'],
      [2, 'site-b', 'weights-not-finite'],
    ]);
    expect(completed.map((c) => [c.round, c.accepted, c.rejected])).toEqual([
      [1, ['site-a', 'site-b'], ['site-c']],
      [2, ['site-a', 'site-c'], ['site-b']],
    ]);
    // The replay of round 1 during round 2 was ignored at its first message, and said so.
    expect(replayReplies.length).toBeGreaterThanOrEqual(3);
    for (const r of replayReplies) expect(r).toMatchObject({ type: 'error', payload: { code: 'stale-update' } });
    expect(ignored.some((e) => e.siteId === 'site-a' && e.code === 'stale-update' && e.round === 1)).toBe(true);

    // The aggregates contain exactly the accepted updates.
    const after1 = globals.get(2)!;
    expect(relativeError(after1.values, weightedMean([0, 1].map((i) => ({ update: fakeUpdate(globals.get(1)!, i, 1), samples: samples(i) }))))).toBeLessThan(1e-6);
    const final = coordinator.globalWeights().weights;
    expect(relativeError(final.values, weightedMean([0, 2].map((i) => ({ update: fakeUpdate(after1, i, 2), samples: samples(i) }))))).toBeLessThan(1e-6);

    // Durable record of the rejections.
    const rounds = coordinator.db.listRounds('fed-test').filter((r) => r.status === 'complete' && r.round > 0);
    const statuses = rounds.map((r) => coordinator!.db.listSiteUpdates(r.id).map((u) => `${u.siteId}:${u.status}`).sort());
    expect(statuses).toEqual([
      ['site-a:accepted', 'site-b:accepted', 'site-c:rejected'],
      ['site-a:accepted', 'site-b:rejected', 'site-c:accepted'],
    ]);
    expect(ids).toHaveLength(3);
  });
});
