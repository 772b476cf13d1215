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
import { PROTOCOL_VERSION, SOCKET_IO_MAX_HTTP_BUFFER_SIZE } from '../shared/protocol/limits.ts';
import { UpdateSender } from '../shared/protocol/transfer.ts';
import { socketRequester } from '../shared/protocol/transport.ts';
import type { NamedWeights } from '../shared/weights.ts';
import type { CoordinatorEvents } from '../coordinator/index.ts';
import { CoordinatorClient, type ClientEvents } from '../site-agent/daemon/client.ts';
import {
  MiB,
  collect,
  fakeInitialWeights,
  fakeMetrics,
  fakeUpdate,
  relativeError,
  waitForEvent,
  weightedMean,
  FederationHarness,
} from './federation-fixtures.ts';
import { rng as seededRandom } from './dataset-fixtures.ts';

const federation = new FederationHarness();
/** Connections a test opens besides the harness's sites: closed after each test. */
const extraClients: CoordinatorClient[] = [];
const rawSockets: Socket[] = [];

afterEach(async () => {
  for (const s of rawSockets.splice(0)) s.disconnect();
  await Promise.all(extraClients.splice(0).map((c) => c.stop()));
});

function rawSocket(url: string): Promise<Socket> {
  const socket = connect(url, { transports: ['websocket'], reconnection: false, forceNew: true });
  rawSockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

async function rawSocketEventually(url: string): Promise<Socket> {
  for (let i = 0; ; i++) {
    try {
      return await rawSocket(url);
    } catch (e) {
      if (i >= 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function closed(socket: Socket): Promise<string> {
  return new Promise((resolve) => (socket.disconnected ? resolve('already') : socket.once('disconnect', (reason) => resolve(reason))));
}

describe('federation security', () => {
  it('refuses unknown sites, wrong keys and an impostor coordinator; drops unauthenticated and hostile traffic', async () => {
    // Hold the round back: nothing in this test needs training.
    const { fed, coordinator } = await federation.start({ sites: ['site-a'], experiment: { rounds: 1, startupGraceSeconds: 600, minSites: 1 }, limits: { handshakeTimeoutSeconds: 1 } });
    const refusals = collect<CoordinatorEvents['auth-failed']>(coordinator.events, 'auth-failed');
    const online = collect<CoordinatorEvents['site-online']>(coordinator.events, 'site-online');

    const mk = (siteId: string, keys = generateKeyPairs(), coordinatorPublicKey = fed.coordinatorKeys) => {
      const c = new CoordinatorClient({ url: coordinator.url, siteId, keys, coordinatorPublicKey, backoff: { initialMs: 100, maxMs: 200 } });
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
    expect(await hostile.timeout(5000).emitWithAck('hello', { protocolVersion: PROTOCOL_VERSION, siteId: '../../etc', agentVersion: 'x', extra: 1 })).toMatchObject({ type: 'error', payload: { code: 'bad-message' } });
    expect(await hostile.timeout(5000).emitWithAck('no-such-type', {})).toMatchObject({ type: 'error', payload: { code: 'unknown-message-type' } });
    expect(await hostile.timeout(5000).emitWithAck('hello', { protocolVersion: PROTOCOL_VERSION, siteId: 'site-a', agentVersion: '1' })).toMatchObject({ type: 'challenge' });
    await hostileClosed; // handshake timeout (1 s)
    // An oversized handshake message (over 8 KiB) before authentication closes the connection at once.
    const oversized = await rawSocket(coordinator.url);
    const oversizedClosed = closed(oversized);
    oversized.emit('hello', 'a'.repeat(100_000));
    expect(await oversizedClosed).toMatch(/transport (close|error)/);
    // A site 'error' event (an EventEmitter special name) before authentication: closed, nothing crashes.
    const erring = await rawSocket(coordinator.url);
    const erringClosed = closed(erring);
    erring.emit('error', { code: 'x', message: 'y' });
    expect(await erringClosed).toBe('io server disconnect');

    // The coordinator is still healthy and the genuine site gets in.
    const genuine = federation.addSite('site-a', { start: false });
    const connected = waitForEvent(genuine.client, 'connected');
    genuine.client.start();
    await connected;
    expect(coordinator.state().onlineSites).toEqual(['site-a']);
  });

  it('rejects a tampered chunk and a NaN update, ignores a replayed upload, and completes the rounds with the honest updates', async () => {
    const { fed, coordinator } = await federation.start({ experiment: { rounds: 2, minSites: 2 } });
    const ids = [...fed.siteKeys.keys()]; // site-a, site-b, site-c
    const rejected = collect<CoordinatorEvents['update-rejected']>(coordinator.events, 'update-rejected');
    const ignored = collect<CoordinatorEvents['update-ignored']>(coordinator.events, 'update-ignored');
    const completed = collect<CoordinatorEvents['round-complete']>(coordinator.events, 'round-complete');
    const samples = (i: number) => 10 * (i + 1);
    const globals = new Map<number, NamedWeights>();

    // site-a: records its round-1 upload messages and replays them during round 2.
    const captured: [string, unknown][] = [];
    let replayReplies: unknown[] = [];
    const siteA = federation.addSite('site-a', {
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
    const siteB = federation.addSite('site-b', {
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
    const siteC = federation.addSite('site-c', {
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
    const final = (await coordinator.globalWeights()).weights;
    expect(relativeError(final.values, weightedMean([0, 2].map((i) => ({ update: fakeUpdate(after1, i, 2), samples: samples(i) }))))).toBeLessThan(1e-6);

    // Durable record of the rejections.
    const rounds = coordinator.db.listRounds('fed-test').filter((r) => r.status === 'complete' && r.round > 0);
    const statuses = rounds.map((r) => coordinator.db.listSiteUpdates(r.id).map((u) => `${u.siteId}:${u.status}`).sort());
    expect(statuses).toEqual([
      ['site-a:accepted', 'site-b:accepted', 'site-c:rejected'],
      ['site-a:accepted', 'site-b:rejected', 'site-c:accepted'],
    ]);
    expect(ids).toHaveLength(3);
  });

  it('survives fuzzed payloads from an authenticated site, which keeps working, as does the federation', async () => {
    const { coordinator } = await federation.start({ sites: ['site-a', 'site-b'], experiment: { rounds: 1, minSites: 2 }, limits: { maxMessagesPerSecond: 5000 } });
    const internalErrors = collect<CoordinatorEvents['internal-error']>(coordinator.events, 'internal-error');
    // site-a is authenticated; no round opens while site-b is away.
    const a = federation.addSite('site-a', { start: false });
    const connected = waitForEvent(a.client, 'connected');
    a.client.start();
    await connected;
    const socket = a.socket!;

    const rng = seededRandom(20240611);
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
    const hostile = (): unknown =>
      pick<() => unknown>([
        () => null,
        () => -1,
        () => 1e308,
        () => Number.NaN,
        () => '',
        () => 'x'.repeat(70_000),
        () => '../../../etc/passwd',
        () => [],
        () => JSON.parse('[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]'),
        () => JSON.parse('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}'),
        () => Buffer.alloc(Math.floor(rng() * 3000)),
        () => true,
        () => new Array(300).fill(0),
        () => ({ toString: 'x', valueOf: 1 }),
      ])();
    const templates: Record<string, () => Record<string, unknown>> = {
      'update-begin': () => ({ transferId: 'a'.repeat(32), round: 1, totalBytes: 2 * MiB, chunkBytes: MiB, chunkCount: 2, sha256: 'b'.repeat(64) }),
      'update-resume': () => ({ transferId: 'a'.repeat(32) }),
      'update-chunk': () => ({ transferId: 'a'.repeat(32), index: 0, nonce: Buffer.alloc(24).toString('base64'), ciphertext: Buffer.alloc(1000), signature: Buffer.alloc(64).toString('base64') }),
      'update-commit': () => ({ transferId: 'a'.repeat(32), samples: 10, metrics: fakeMetrics(), signature: Buffer.alloc(64).toString('base64') }),
      'checkpoint-request': () => ({ experimentId: 'fed-test', version: 1, index: 0 }),
      hello: () => ({ protocolVersion: PROTOCOL_VERSION, siteId: 'site-a', agentVersion: '1' }),
      auth: () => ({ sessionId: '0'.repeat(32), siteId: 'site-a', signature: Buffer.alloc(64).toString('base64') }),
    };
    const mutate = (base: Record<string, unknown>): unknown => {
      const keys = Object.keys(base);
      switch (Math.floor(rng() * 4)) {
        case 0:
          return hostile();
        case 1:
          return { ...base, [pick(keys)]: hostile() };
        case 2: {
          const { [pick(keys)]: _gone, ...rest } = base;
          return rest;
        }
        default:
          return { ...base, extra: hostile() };
      }
    };
    const replies: { type: string; reply: { type?: string; payload?: { code?: string } } }[] = [];
    for (let i = 0; i < 140; i++) {
      const type = pick(Object.keys(templates));
      replies.push({ type, reply: (await socket.timeout(5000).emitWithAck(type, mutate(templates[type]!()))) as (typeof replies)[number]['reply'] });
    }
    for (let i = 0; i < 60; i++) socket.emit(pick(['status', 'error', 'site-info']), hostile()); // events: no acknowledgement
    // A genuine checkpoint request still works on this connection afterwards.
    const chunk = (await socket.timeout(5000).emitWithAck('checkpoint-request', templates['checkpoint-request']!())) as { type: string };
    expect(chunk.type).toBe('checkpoint-chunk');
    for (const r of replies) {
      expect(r.reply.type, JSON.stringify(r)).toBe('error');
      expect(r.reply.payload?.code).not.toBe('internal-error');
    }
    expect(new Set(replies.map((r) => r.type)).size).toBe(Object.keys(templates).length);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(internalErrors).toHaveLength(0);
    expect(a.client.connected).toBe(true);

    // After all that, site-b joins and a normal round completes with both honest updates.
    federation.addSite('site-b');
    expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: 1 });
    const g0 = fakeInitialWeights();
    expect(relativeError((await coordinator.globalWeights()).weights.values, weightedMean([0, 1].map((i) => ({ update: fakeUpdate(g0, i, 1), samples: 10 * (i + 1) }))))).toBeLessThan(1e-6);
    expect(internalErrors).toHaveLength(0);
  });
  it('enforces message size, connection and rate limits without affecting anyone else', async () => {
    const { coordinator } = await federation.start({ sites: ['site-a'], experiment: { rounds: 1, minSites: 1, startupGraceSeconds: 600 }, limits: { maxPreAuthConnectionsPerIp: 3, maxMessagesPerSecond: 20 } });
    const internalErrors = collect<CoordinatorEvents['internal-error']>(coordinator.events, 'internal-error');
    // Size: a message over the pre-auth limits (and socket.io's buffer limit) ends that connection, nothing else.
    const big = await rawSocket(coordinator.url);
    const bigClosed = closed(big);
    big.emit('update-chunk', { ciphertext: Buffer.alloc(SOCKET_IO_MAX_HTTP_BUFFER_SIZE + 1024) });
    expect(await bigClosed).toMatch(/transport (close|error)/);

    // Connections: three unauthenticated ones fill this address's limit of 3, the fourth is refused
    // before the websocket upgrade (more of them: test/hardening-network.test.ts).
    const refusedConnections = collect<CoordinatorEvents['connection-refused']>(coordinator.events, 'connection-refused');
    await rawSocketEventually(coordinator.url);
    for (let i = 0; i < 2; i++) await rawSocket(coordinator.url);
    await expect(rawSocket(coordinator.url)).rejects.toThrow();
    expect(refusedConnections.some((e) => e.reason === 'pre-auth-ip-limit')).toBe(true);
    for (const s of rawSockets.splice(0)) s.disconnect();

    // Rate: a burst far above limits.maxMessagesPerSecond gets 'rate-limited' replies, then the connection is closed.
    const flooder = await rawSocketEventually(coordinator.url); // once the server has seen the others go
    const flooderClosed = closed(flooder);
    const burst = await Promise.all(
      Array.from({ length: 300 }, () => flooder.timeout(5000).emitWithAck('hello', { protocolVersion: PROTOCOL_VERSION, siteId: 'site-a', agentVersion: '1' }).catch(() => ({ type: 'lost' }))),
    );
    const codes = burst.map((r) => (r as { payload?: { code?: string } }).payload?.code);
    expect(codes.filter((c) => c === 'rate-limited').length).toBeGreaterThanOrEqual(40);
    expect(await flooderClosed).toBe('io server disconnect'); // persistent abuse ends the connection

    for (const s of rawSockets.splice(0)) s.disconnect();
    // The coordinator is unharmed: healthy, and the genuine site can join and finish the round.
    expect(await fetch(`${coordinator.url}/healthz`).then((r) => r.json())).toMatchObject({ ok: true });
    federation.addSite('site-a');
    expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: 1 });
    expect(internalErrors).toHaveLength(0);
  });
});

