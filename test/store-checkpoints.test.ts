import * as fs from 'node:fs';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CheckpointStore,
  checkpointSigningPayload,
  nodeFileIO,
  sha256Hex,
  type CheckpointStoreOptions,
  type FileIO,
  type StoreLogEvent,
} from '../coordinator/store/index.ts';
import { patchFedErrorOf as errorOf } from './error-fixtures.ts';

const keys = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7));
const signer = (bytes: Uint8Array) => nacl.sign.detached(bytes, keys.secretKey);
const verifier = (bytes: Uint8Array, sig: Uint8Array, keyId: string) => keyId === 'coord-key' && nacl.sign.detached.verify(bytes, sig, keys.publicKey);

let stateDir: string;
beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'patchfed-ckpt-'));
});
afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

function openStore(extra: Partial<CheckpointStoreOptions> = {}): CheckpointStore {
  return new CheckpointStore({ stateDir, signer, keyId: 'coord-key', verifier, ...extra });
}

function artifact(seed: number, size = 1000): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * 31 + seed * 7) & 0xff);
}

function tempLeftovers(): string[] {
  const dir = join(stateDir, 'checkpoints');
  const top = readdirSync(dir).filter((e) => e.startsWith('.tmp-'));
  const inner = readdirSync(dir)
    .filter((e) => /^v\d+$/.test(e))
    .flatMap((v) => readdirSync(join(dir, v)).filter((e) => e.startsWith('.tmp-')));
  return [...top, ...inner];
}

describe('checkpoint store', () => {
  it('writes versioned, hashed, signed checkpoints and reads them back', () => {
    const store = openStore({ now: () => new Date('2025-01-02T03:04:05Z') });
    const a = store.write({ experimentId: 'exp', round: 0, artifact: artifact(1) });
    const b = store.write({ experimentId: 'exp', round: 1, artifact: artifact(2, 2048), extra: { codec: 'pfw/1' } });
    expect([a.version, b.version]).toEqual([1, 2]);
    expect(readdirSync(join(stateDir, 'checkpoints')).sort()).toEqual(['v000001', 'v000002']);
    expect(readdirSync(join(stateDir, 'checkpoints', 'v000002')).sort()).toEqual(['meta.json', 'weights.pfw']);
    expect(b).toMatchObject({ round: 1, experimentId: 'exp', sizeBytes: 2048, sha256: sha256Hex(artifact(2, 2048)), keyId: 'coord-key', best: false, createdAt: '2025-01-02T03:04:05.000Z', extra: { codec: 'pfw/1' } });
    // The signature covers (experiment, version, round, hash, size) and verifies with the public key.
    expect(nacl.sign.detached.verify(checkpointSigningPayload(b), Buffer.from(b.signature, 'base64'), keys.publicKey)).toBe(true);
    const read = store.read(2);
    expect(Buffer.from(read.artifact).equals(Buffer.from(artifact(2, 2048)))).toBe(true);
    expect(store.list().map((m) => m.version)).toEqual([1, 2]);
    expect(store.latest()?.version).toBe(2);
    expect(store.get(1)?.round).toBe(0);
    expect(store.get(3)).toBeUndefined();
    // A fresh store on the same dir sees the same state and continues numbering.
    expect(openStore().write({ experimentId: 'exp', round: 2, artifact: artifact(3) }).version).toBe(3);
  });

  it('detects a corrupted artifact on read, naming the version', () => {
    const store = openStore();
    store.write({ experimentId: 'exp', round: 0, artifact: artifact(1) });
    const path = join(stateDir, 'checkpoints', 'v000001', 'weights.pfw');
    const bytes = fs.readFileSync(path);
    bytes[10]! ^= 0x01;
    fs.writeFileSync(path, bytes);
    const err = errorOf(() => store.read(1));
    expect(err.code).toBe('checkpoint-corrupt');
    expect(err.message).toMatch(/v000001.*sha256/);
    expect(store.verify(1).ok).toBe(false);
    fs.writeFileSync(path, bytes.subarray(0, 500));
    expect(errorOf(() => store.read(1)).message).toMatch(/500 bytes, meta.json says 1000/);
  });

  it('rejects a meta.json whose signed fields were edited', () => {
    const store = openStore();
    store.write({ experimentId: 'exp', round: 4, artifact: artifact(1) });
    const metaPath = join(stateDir, 'checkpoints', 'v000001', 'meta.json');
    const meta = JSON.parse(fs.readFileSync(metaPath, 'utf8'));
    fs.writeFileSync(metaPath, JSON.stringify({ ...meta, round: 5 }));
    const err = errorOf(() => store.read(1));
    expect(err.code).toBe('checkpoint-signature-invalid');
    expect(err.message).toContain("key 'coord-key'");
  });

  it('retention keeps the newest N, the latest and every best', () => {
    const store = openStore();
    for (let r = 0; r < 6; r++) store.write({ experimentId: 'exp', round: r, artifact: artifact(r) });
    store.markBest(2);
    expect(store.get(2)?.best).toBe(true);
    expect(store.read(2).meta.best).toBe(true); // best is not signed, so marking keeps the signature valid
    expect(store.prune(2)).toEqual([1, 3, 4]);
    expect(store.list().map((m) => m.version)).toEqual([2, 5, 6]);
    expect(store.prune(1)).toEqual([5]);
    expect(store.list().map((m) => m.version)).toEqual([2, 6]);
    expect(tempLeftovers()).toEqual([]);
    expect(errorOf(() => store.prune(0)).code).toBe('bad-store-config');
    expect(store.write({ experimentId: 'exp', round: 6, artifact: artifact(9) }).version).toBe(7);
  });

  it('recover() removes temp leftovers, quarantines incomplete dirs and falls back from a corrupt latest', () => {
    const events: StoreLogEvent[] = [];
    const store = openStore({ log: (e) => events.push(e) });
    for (let r = 0; r < 3; r++) store.write({ experimentId: 'exp', round: r, artifact: artifact(r) });
    const dir = join(stateDir, 'checkpoints');
    // A crash mid-write leaves a temp dir; a crash mid-markBest leaves a temp meta file.
    fs.mkdirSync(join(dir, '.tmp-v000004-123-abcd'));
    fs.writeFileSync(join(dir, '.tmp-v000004-123-abcd', 'weights.pfw'), 'partial');
    fs.writeFileSync(join(dir, 'v000001', '.tmp-meta.json-1-ff'), '{');
    // A version dir without meta.json (damaged by hand / disk) and a corrupt latest.
    fs.mkdirSync(join(dir, 'v000005'));
    fs.writeFileSync(join(dir, 'v000005', 'weights.pfw'), 'x');
    fs.writeFileSync(join(dir, 'v000003', 'weights.pfw'), artifact(99));

    const report = store.recover();
    expect(report.removedTemp.sort()).toEqual(['.tmp-v000004-123-abcd', 'v000001/.tmp-meta.json-1-ff']);
    expect(report.quarantined.map((q) => q.version)).toEqual([5, 3]);
    expect(report.quarantined[0]!.reason).toMatch(/meta.json is missing/);
    expect(report.quarantined[1]!.reason).toMatch(/sha256/);
    expect(report.latest?.version).toBe(2);
    expect(events.some((e) => e.kind === 'checkpoint-fallback' && /v000003 is corrupt; falling back to v000002/.test(e.message))).toBe(true);
    expect(tempLeftovers()).toEqual([]);
    expect(store.list().map((m) => m.version)).toEqual([1, 2]);
    expect(readdirSync(join(stateDir, 'quarantine')).map((n) => n.slice(0, 7)).sort()).toEqual(['v000003', 'v000005']);
    // Quarantined versions may have been seen by someone: their numbers are never reused.
    expect(store.write({ experimentId: 'exp', round: 3, artifact: artifact(3) }).version).toBe(6);
  });

  it('recover() reports no checkpoint when every one is corrupt', () => {
    const store = openStore();
    store.write({ experimentId: 'exp', round: 0, artifact: artifact(1) });
    fs.writeFileSync(join(stateDir, 'checkpoints', 'v000001', 'weights.pfw'), artifact(2));
    const report = store.recover();
    expect(report.latest).toBeUndefined();
    expect(store.latest()).toBeUndefined();
  });

  it('a full disk during write is reported clearly, leaves no temp files and keeps earlier checkpoints', () => {
    const store = openStore();
    store.write({ experimentId: 'exp', round: 0, artifact: artifact(1, 5000) });
    let budget = 3000; // bytes the "disk" still accepts
    const fullDisk: Partial<FileIO> = {
      writeSync(fd, buf, off, len) {
        if (budget <= 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        const n = Math.min(len, budget);
        budget -= n;
        return nodeFileIO.writeSync(fd, buf, off, n);
      },
    };
    const failing = openStore({ io: fullDisk });
    const err = errorOf(() => failing.write({ experimentId: 'exp', round: 1, artifact: artifact(2, 5000) }));
    expect(err.code).toBe('checkpoint-write-failed');
    expect(err.message).toMatch(/checkpoint v000002 \(round 1\)/);
    expect(err.message).toMatch(/disk is full \(ENOSPC\)/);
    expect(err.message).toMatch(/earlier checkpoints are intact/);
    expect(tempLeftovers()).toEqual([]);
    expect(readdirSync(join(stateDir, 'checkpoints'))).toEqual(['v000001']);
    expect(store.latest()?.version).toBe(1);
    expect(store.read(1).artifact.length).toBe(5000);
    // Space freed: the same version number is used, nothing was published under it.
    expect(store.write({ experimentId: 'exp', round: 1, artifact: artifact(2, 5000) }).version).toBe(2);
  });

  it('a full disk while updating meta.json keeps the old meta', () => {
    const store = openStore();
    store.write({ experimentId: 'exp', round: 0, artifact: artifact(1) });
    const failing = openStore({
      io: { writeSync: () => { throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }); } },
    });
    expect(errorOf(() => failing.markBest(1)).message).toMatch(/v000001\/meta.json: the disk is full/);
    expect(store.read(1).meta.best).toBe(false);
    expect(tempLeftovers()).toEqual([]);
  });

  it('a failing rename (e.g. EIO) is also cleaned up', () => {
    const store = openStore({ io: { renameSync: () => { throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }); } } });
    expect(errorOf(() => store.write({ experimentId: 'exp', round: 0, artifact: artifact(1) })).message).toMatch(/an I\/O error occurred \(EIO\)/);
    expect(readdirSync(join(stateDir, 'checkpoints'))).toEqual([]);
  });

  it('publishes only after every file and the temp dir are fsynced, then fsyncs the parent', () => {
    const ops: string[] = [];
    const paths = new Map<number, string>();
    const short = (p: string) => p.slice(stateDir.length + 1).replace(/\.tmp-v000001-[^/]+/, 'TMP');
    const recording: Partial<FileIO> = {
      openSync(p, flags, mode) {
        const fd = nodeFileIO.openSync(p, flags, mode);
        paths.set(fd, short(p));
        return fd;
      },
      writeSync(fd, buf, off, len) {
        ops.push(`write ${paths.get(fd)}`);
        return nodeFileIO.writeSync(fd, buf, off, len);
      },
      fsyncSync(fd) {
        ops.push(`fsync ${paths.get(fd)}`);
        nodeFileIO.fsyncSync(fd);
      },
      renameSync(a, b) {
        ops.push(`rename ${short(a)} -> ${short(b)}`);
        nodeFileIO.renameSync(a, b);
      },
    };
    openStore({ io: recording }).write({ experimentId: 'exp', round: 0, artifact: artifact(1) });
    expect(ops).toEqual([
      'write checkpoints/TMP/weights.pfw',
      'fsync checkpoints/TMP/weights.pfw',
      'write checkpoints/TMP/meta.json',
      'fsync checkpoints/TMP/meta.json',
      'fsync checkpoints/TMP',
      'rename checkpoints/TMP -> checkpoints/v000001',
      'fsync checkpoints',
    ]);
  });

  it('refuses bad input before touching the disk', () => {
    const store = openStore();
    expect(errorOf(() => store.write({ experimentId: '', round: 0, artifact: artifact(1) })).subject).toBe('experimentId');
    expect(errorOf(() => store.write({ experimentId: 'e', round: -1, artifact: artifact(1) })).subject).toBe('round');
    expect(errorOf(() => openStore({ signer: () => new Uint8Array(0) }).write({ experimentId: 'e', round: 0, artifact: artifact(1) })).code).toBe('checkpoint-sign-failed');
    expect(readdirSync(join(stateDir, 'checkpoints'))).toEqual([]);
  });
});
