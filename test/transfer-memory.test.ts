import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { encodeWeights } from '../shared/codec/weights-codec.ts';
import { generateKeyPairs, publicKeysOf, type KeyPairs } from '../shared/crypto/keys.ts';
import { SEAL_NONCE_BYTES, deriveSharedKey, signCheckpoint } from '../shared/crypto/seal.ts';
import { CheckpointDownload, serveCheckpoints } from '../shared/protocol/checkpoint-transfer.ts';
import { encodeMessage, parseReply, type Metrics } from '../shared/protocol/messages.ts';
import { UpdateReceiver, UpdateSender, type CompletedUpload } from '../shared/protocol/transfer.ts';
import { MemoryLink } from '../shared/protocol/transport.ts';
import type { NamedWeights } from '../shared/weights.ts';

const MiB = 1024 * 1024;
const coordinator = generateKeyPairs();
const siteA = generateKeyPairs();
const siteB = generateKeyPairs();
const metrics: Metrics = { loss: 0.3, dice: { liver: 0.9 }, timeMs: 1000, peakMemoryBytes: 10 * MiB, backend: 'cpu', patch: [32, 32, 32], batch: 1 };
const payload = new Uint8Array(randomBytes(3.5 * MiB)); // 4 chunks of 1 MiB, the last one half full
const payloadSha = createHash('sha256').update(payload).digest('hex');

const dirs: string[] = [];
const receivers: UpdateReceiver[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function setup(options: { round?: number; retainMs?: number } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'patchfed-transfer-mem-'));
  dirs.push(dir);
  let clock = 1_000_000;
  const state = { round: options.round ?? 5, clock: () => clock, advance: (ms: number) => (clock += ms) };
  const receiver = new UpdateReceiver({ directory: dir, coordinatorBoxSecretKey: coordinator.boxSecretKey, retainMs: options.retainMs, now: () => clock });
  receivers.push(receiver);
  const completed: (CompletedUpload & { bytesSha: string })[] = [];
  let refuse: PatchFedError | null = null;
  const connect = (siteId = 'hospital-a', keys: KeyPairs = siteA) => {
    const link = new MemoryLink();
    receiver.attach(link.server, {
      siteId,
      siteKeys: publicKeysOf(keys),
      currentRound: () => state.round,
      onComplete: (u) => {
        if (refuse) throw refuse;
        completed.push({ ...u, bytesSha: createHash('sha256').update(readFileSync(u.path)).digest('hex') });
      },
    });
    return link;
  };
  const sender = (over: Partial<ConstructorParameters<typeof UpdateSender>[0]> = {}) =>
    new UpdateSender({
      payload,
      round: state.round,
      siteId: 'hospital-a',
      keys: { sharedKey: deriveSharedKey(coordinator.boxPublicKey, siteA.boxSecretKey), signSecretKey: siteA.signSecretKey },
      chunkBytes: 1 * MiB,
      window: 1,
      ...over,
    });
  return { dir, state, receiver, completed, connect, sender, refuseWith: (e: PatchFedError) => (refuse = e) };
}

async function failure(p: Promise<unknown>): Promise<PatchFedError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PatchFedError);
    return e as PatchFedError;
  }
  throw new Error('expected the upload to fail');
}

/** Flips one byte of the ciphertext of chunk `index` in flight. */
function flipByteOfChunk(index: number) {
  return (type: string, p: unknown) => {
    const m = p as { index?: number; ciphertext?: Uint8Array };
    if (type !== 'update-chunk' || m.index !== index) return p;
    const ciphertext = new Uint8Array(m.ciphertext!);
    ciphertext[777]! ^= 0x01;
    return { ...m, ciphertext };
  };
}

describe('chunked upload over an in-memory transport', () => {
  it('delivers the exact payload with samples and metrics, then removes the temp file', async () => {
    const t = setup();
    const sender = t.sender();
    expect(sender.chunkCount).toBe(4);
    const progress: number[] = [];
    const result = await t.sender({ transferId: sender.transferId, onProgress: (p) => progress.push(p.chunksAcked) }).upload(t.connect().client, { samples: 17, metrics });
    expect(result.sha256).toBe(payloadSha);
    expect(t.completed).toHaveLength(1);
    expect(t.completed[0]).toMatchObject({ siteId: 'hospital-a', round: 5, samples: 17, metrics, sha256: payloadSha, bytesSha: payloadSha, totalBytes: payload.length });
    expect(progress).toEqual([1, 2, 3, 4]);
    expect(t.receiver.stats).toEqual({ chunksStored: 4, duplicateChunks: 0, chunksRejected: 0 });
    expect(readdirSync(t.dir)).toEqual([]);
  });

  it('resumes after a disconnect from the first chunk the receiver does not have', async () => {
    const t = setup();
    const sender = t.sender();
    const first = t.connect();
    let acks = 0;
    first.onDelivered = (type) => {
      if (type === 'update-chunk' && ++acks === 2) first.disconnect();
    };
    const err = await failure(sender.upload(first.client, { samples: 3, metrics }));
    expect(err.code).toBe('transfer-interrupted');
    expect(t.receiver.partialUploads).toBe(1);
    await sender.upload(t.connect().client, { samples: 3, metrics });
    expect(sender.stats.resumedFrom).toEqual([0, 2]);
    // Window 1: chunk 2 was sealed and sent once the ack of chunk 1 arrived, then the link
    // dropped before delivering it, so exactly that one chunk went out twice.
    expect(sender.stats.chunksResent).toBe(1);
    expect(sender.stats.chunksSent).toBe(5);
    expect(t.receiver.stats.chunksStored).toBe(4);
    expect(t.completed[0]!.bytesSha).toBe(payloadSha);
  });

  it('does not resend a chunk the receiver stored although its acknowledgement was lost', async () => {
    const t = setup();
    const sender = t.sender({ window: 3 });
    const first = t.connect();
    // Drop the link as chunk 2 is delivered: the receiver stores it, the sender never hears back.
    first.tamper = (type, p) => {
      if (type === 'update-chunk' && (p as { index: number }).index === 2) first.disconnect();
      return p;
    };
    expect((await failure(sender.upload(first.client, { samples: 3, metrics }))).code).toBe('transfer-interrupted');
    await sender.upload(t.connect().client, { samples: 3, metrics });
    expect(sender.stats.resumedFrom).toEqual([0, 3]);
    expect(sender.stats.chunksResent).toBe(0);
    expect(t.receiver.stats).toEqual({ chunksStored: 4, duplicateChunks: 0, chunksRejected: 0 });
    expect(t.completed[0]!.bytesSha).toBe(payloadSha);
  });

  it('rejects a chunk with one flipped byte (signature), stores nothing from it, and can continue with the genuine chunk', async () => {
    const t = setup();
    const sender = t.sender();
    const link = t.connect();
    link.tamper = flipByteOfChunk(1);
    const err = await failure(sender.upload(link.client, { samples: 3, metrics }));
    expect(err.code).toBe('chunk-bad-signature');
    expect(err.message).toMatch(/bad signature/);
    expect(t.receiver.stats).toMatchObject({ chunksStored: 1, chunksRejected: 1 });
    expect(t.completed).toHaveLength(0);
    link.tamper = null;
    await sender.upload(link.client, { samples: 3, metrics });
    expect(sender.stats.resumedFrom).toEqual([0, 1]);
    expect(t.completed[0]!.bytesSha).toBe(payloadSha);
  });

  it('rejects uploads for the wrong round, at begin and when the round moves on mid-transfer', async () => {
    const t = setup({ round: 5 });
    expect((await failure(t.sender({ round: 4 }).upload(t.connect().client, { samples: 1, metrics }))).code).toBe('wrong-round');
    const sender = t.sender();
    const link = t.connect();
    let acks = 0;
    link.onDelivered = (type) => {
      if (type === 'update-chunk' && ++acks === 1) t.state.round = 6;
    };
    const err = await failure(sender.upload(link.client, { samples: 1, metrics }));
    expect(err.code).toBe('chunk-wrong-round');
    expect(t.completed).toHaveLength(0);
  });

  it('refuses a commit whose sample count was changed in flight, then accepts the genuine one', async () => {
    const t = setup();
    const sender = t.sender();
    const link = t.connect();
    link.tamper = (type, p) => (type === 'update-commit' ? { ...(p as object), samples: 10_000 } : p);
    expect((await failure(sender.upload(link.client, { samples: 3, metrics }))).code).toBe('commit-bad-signature');
    expect(t.completed).toHaveLength(0);
    link.tamper = null;
    await sender.upload(link.client, { samples: 3, metrics });
    expect(sender.stats.resumedFrom).toEqual([0, 4]);
    expect(t.completed.map((c) => c.samples)).toEqual([3]);
  });

  it('answers a repeated commit (lost commit-ok) without completing twice', async () => {
    const t = setup();
    const sender = t.sender();
    const link = t.connect();
    // The commit reaches the receiver, but the link drops before commit-ok gets back.
    link.tamper = (type, p) => {
      if (type === 'update-commit') link.disconnect();
      return p;
    };
    expect((await failure(sender.upload(link.client, { samples: 3, metrics }))).code).toBe('transfer-interrupted');
    const again = await sender.upload(t.connect().client, { samples: 3, metrics });
    expect(again.sha256).toBe(payloadSha);
    expect(sender.stats.resumedFrom).toEqual([0, 4]);
    expect(sender.stats.chunksResent).toBe(0);
    expect(t.completed).toHaveLength(1);
  });

  it('passes a refusal from onComplete back to the site', async () => {
    const t = setup();
    t.refuseWith(new PatchFedError('weights-not-finite', "tensor 'enc0/conv1/kernel' has a non-finite value"));
    const err = await failure(t.sender().upload(t.connect().client, { samples: 3, metrics }));
    expect(err.code).toBe('weights-not-finite');
    expect(err.message).toContain("'enc0/conv1/kernel'");
    expect(readdirSync(t.dir)).toEqual([]);
  });

  it('forgets idle partial uploads after retainMs; the sender then starts over', async () => {
    const t = setup({ retainMs: 60_000 });
    const sender = t.sender();
    const first = t.connect();
    let acks = 0;
    first.onDelivered = (type) => {
      if (type === 'update-chunk' && ++acks === 3) first.disconnect();
    };
    await failure(sender.upload(first.client, { samples: 3, metrics }));
    t.state.advance(61_000);
    await sender.upload(t.connect().client, { samples: 3, metrics });
    expect(sender.stats.resumedFrom).toEqual([0, 0]);
    expect(sender.stats.chunksResent).toBe(4); // chunks 0-2 acked before, 3 sent but lost
    expect(t.completed[0]!.bytesSha).toBe(payloadSha);
  });

  it('keeps uploads of different sites apart: another site cannot resume or feed a transfer', async () => {
    const t = setup();
    const sender = t.sender();
    const a = t.connect();
    const captured: unknown[] = [];
    a.tamper = (type, p) => (type === 'update-chunk' && captured.push(p), p);
    let acks = 0;
    a.onDelivered = (type) => {
      if (type === 'update-chunk' && ++acks === 1) a.disconnect();
    };
    await failure(sender.upload(a.client, { samples: 3, metrics }));
    const b = t.connect('hospital-b', siteB);
    const ask = async (type: 'update-resume' | 'update-begin' | 'update-chunk', p: unknown) => parseReply(type, await b.client.request(type, p, 1000));
    expect(await ask('update-resume', { transferId: sender.transferId })).toMatchObject({ type: 'error', payload: { code: 'unknown-transfer' } });
    // Site B opens a transfer under the same id and replays site A's genuine chunk 0 into it.
    const begin = { transferId: sender.transferId, round: 5, totalBytes: payload.length, chunkBytes: MiB, chunkCount: 4, sha256: payloadSha };
    expect((await ask('update-begin', begin)).type).toBe('transfer-status');
    expect(await ask('update-chunk', captured[0])).toMatchObject({ type: 'error', payload: { code: 'chunk-bad-signature' } });
    // Site A's own upload is untouched and resumes where it was.
    await sender.upload(t.connect().client, { samples: 3, metrics });
    expect(sender.stats.resumedFrom).toEqual([0, 1]);
    expect(t.completed.map((c) => c.siteId)).toEqual(['hospital-a']);
    expect(t.completed[0]!.bytesSha).toBe(payloadSha);
  });

  it('removes orphaned partial files of an earlier process, and nothing else', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'patchfed-transfer-orphans-'));
    dirs.push(dir);
    writeFileSync(path.join(dir, `${'0a'.repeat(16)}.part`), 'old');
    writeFileSync(path.join(dir, 'notes.txt'), 'keep');
    receivers.push(new UpdateReceiver({ directory: dir, coordinatorBoxSecretKey: coordinator.boxSecretKey }));
    expect(readdirSync(dir)).toEqual(['notes.txt']);
  });

  it('answers hostile requests with error replies and keeps working', async () => {
    const t = setup();
    const link = t.connect();
    for (const [type, p] of [
      ['update-chunk', {}],
      ['update-begin', { __proto__: null, transferId: 'x' }],
      ['update-commit', 'garbage'],
      ['update-resume', { transferId: '../../../etc/passwd0000' }],
      ['update-chunk', encodeMessage('update-chunk', { transferId: 'a'.repeat(20), index: 0, nonce: new Uint8Array(SEAL_NONCE_BYTES), ciphertext: new Uint8Array(100), signature: new Uint8Array(64) })],
    ] as const) {
      const reply = parseReply(type, await link.client.request(type, p, 1000));
      expect(reply.type, type).toBe('error');
    }
    await t.sender().upload(link.client, { samples: 3, metrics });
    expect(t.completed).toHaveLength(1);
  });
});

describe('checkpoint download', () => {
  const weights: NamedWeights = {
    manifest: [
      { name: 'a/kernel', shape: [600_000], trainable: true, role: 'conv-kernel' },
      { name: 'a/bias', shape: [8], trainable: true, role: 'conv-bias' },
    ],
    values: [Float32Array.from({ length: 600_000 }, (_, i) => Math.cos(i)), new Float32Array(8).fill(0.5)],
  };
  const content = encodeWeights(weights); // ~2.3 MiB: 3 chunks of 1 MiB
  const signed = signCheckpoint(content, { experimentId: 'liver-2026', version: 4 }, coordinator.signSecretKey);
  const announced = { version: signed.version, sha256: signed.sha256, size: signed.size, signature: signed.signature };

  function serve(bytes: Uint8Array = content) {
    const link = new MemoryLink();
    let requests = 0;
    serveCheckpoints(link.server, (id, v) => (requests++, id === 'liver-2026' && v === 4 ? bytes : undefined), 1 * MiB);
    return { link, requests: () => requests };
  }

  it('downloads, verifies and decodes, resuming after a disconnect', async () => {
    const first = serve();
    let chunks = 0;
    first.link.onDelivered = () => {
      if (++chunks === 2) first.link.disconnect();
    };
    const download = new CheckpointDownload({ experimentId: 'liver-2026', checkpoint: announced, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey, expectedManifest: weights.manifest });
    expect((await failure(download.run(first.link.client))).code).toBe('transfer-interrupted');
    const second = serve();
    const got = await download.run(second.link.client);
    expect(second.requests()).toBe(1); // only the last chunk was fetched again
    expect(Array.from(got.values[1]!)).toEqual(Array.from(weights.values[1]!));
    expect(got.values[0]![12345]).toBe(weights.values[0]![12345]);
  });

  it('refuses a forged announcement before downloading, and substituted content after', async () => {
    const rogue = generateKeyPairs();
    const forged = signCheckpoint(content, { experimentId: 'liver-2026', version: 4 }, rogue.signSecretKey);
    const s = serve();
    expect(() => new CheckpointDownload({ experimentId: 'liver-2026', checkpoint: { ...announced, signature: forged.signature }, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey })).toThrow(
      PatchFedError,
    );
    expect(s.requests()).toBe(0);
    const substituted = new Uint8Array(content);
    new DataView(substituted.buffer).setFloat32(substituted.length - 4, 0.25, true);
    const err = await failure(new CheckpointDownload({ experimentId: 'liver-2026', checkpoint: announced, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey }).run(serve(substituted).link.client));
    expect(err.code).toBe('checkpoint-hash-mismatch');
    const tooLong = new Uint8Array(content.length + 8);
    tooLong.set(content);
    expect((await failure(new CheckpointDownload({ experimentId: 'liver-2026', checkpoint: announced, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey }).run(serve(tooLong).link.client))).code).toBe(
      'checkpoint-size-mismatch',
    );
  });
});
