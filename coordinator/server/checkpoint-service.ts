/**
 * The global model as the coordinator serves it: the CheckpointStore (durable, signed on disk),
 * the current version opened for positional reads (never held in memory: a 1 GB model stays on
 * disk and in the page cache), and the signed announcement sites verify against the pinned
 * coordinator key. The previous version stays open for a while so a site finishing a download
 * of it is not cut off.
 *
 * Each version is written in one streaming pass — encoded, checked (order, finite values, the
 * norm guard), hashed and signed as it is produced — and its L2 norm is recorded in meta.json so
 * the next round's checks can compare against it without reading the model again.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import nacl from 'tweetnacl';
import { PatchFedError } from '../../shared/errors.ts';
import { WeightsFile, decodeWeightsFile, fileRuns, type RunVisitor } from '../../shared/codec/index.ts';
import type { KeyPairs } from '../../shared/crypto/keys.ts';
import { signCheckpoint } from '../../shared/crypto/seal.ts';
import { EXPERIMENT_FILE } from '../../shared/protocol/experiment-file.ts';
import type { Message } from '../../shared/protocol/messages.ts';
import type { NamedWeights, WeightSpec } from '../../shared/weights.ts';
import { CheckpointStore, type CheckpointMeta } from '../store/index.ts';
import { CheckingEncoder, type EncodingGuard } from './weights-encoder.ts';

/** Files a strategy publishes with a checkpoint (the store's rule for extra files: `<name>.json`). */
const ATTACHMENT_NAME = /^[a-z][a-z0-9-]*\.json$/;

/** What a stateful strategy adds to a checkpoint, and reads back from it (coordinator/strategies/types.ts). */
export interface CheckpointAttachments {
  files?: Record<string, Uint8Array>;
  extra?: Record<string, unknown>;
}
export interface SavedCheckpoint {
  version: number;
  round: number;
  extra: Readonly<Record<string, unknown>>;
  readFile(name: string): Uint8Array | null;
}

export type CheckpointAnnouncement = Message<'round-task'>['checkpoint'];

export interface CurrentCheckpoint {
  meta: CheckpointMeta;
  /** The weights, read from the checkpoint file on demand. */
  values: WeightsFile;
  manifest: readonly WeightSpec[];
  /** L2 norm of all the weights. */
  l2Norm: number;
  announcement: CheckpointAnnouncement;
}

/** A stored checkpoint's bytes, read in pieces (checkpoint downloads). */
export interface CheckpointSource {
  size: number;
  read(offset: number, length: number): Uint8Array;
}

const READ_BLOCK = 4 * 1024 * 1024;

export class CheckpointService {
  readonly store: CheckpointStore;
  private current: CurrentCheckpoint | null = null;
  private previous: CurrentCheckpoint | null = null;
  private readonly signatureChecks = new Map<number, boolean>();

  constructor(
    stateDir: string,
    private readonly experimentId: string,
    private readonly keys: KeyPairs,
    keyId: string,
    log: (kind: string, message: string) => void,
    /** The signed experiment description, published as experiment.json in every version. */
    private readonly experimentFile: Uint8Array,
  ) {
    this.store = new CheckpointStore({
      stateDir,
      keyId,
      signer: (bytes) => nacl.sign.detached(bytes, keys.signSecretKey),
      verifier: (bytes, signature, id) => id === keyId && nacl.sign.detached.verify(bytes, signature, keys.signPublicKey),
      log: (e) => log(e.kind, e.message),
    });
  }

  get latest(): CurrentCheckpoint {
    if (!this.current) throw new Error('CheckpointService: no checkpoint loaded yet');
    return this.current;
  }

  get hasCurrent(): boolean {
    return this.current !== null;
  }

  /** Durably writes weights held in memory as a new version (the initial model). Not yet current. */
  writeWeights(round: number, weights: NamedWeights): CheckpointMeta {
    return this.writeModel(round, weights.manifest, (sink) => weights.values.forEach((v, t) => sink(t, 0, v)), {});
  }

  /**
   * Durably writes a new version produced as a stream of value runs (an aggregator's finish),
   * checked on the way; `guard` bounds its norm against the previous model's. Not yet current:
   * the DB commit comes first.
   */
  writeModel(round: number, manifest: readonly WeightSpec[], produce: (sink: RunVisitor) => void, guard: EncodingGuard, attachments?: () => CheckpointAttachments): CheckpointMeta {
    let encoder: CheckingEncoder | null = null;
    const files: Record<string, Uint8Array> = { [EXPERIMENT_FILE]: this.experimentFile };
    let extra: Record<string, unknown> = {};
    return this.store.writeStreaming(
      { experimentId: this.experimentId, round, files, extra: () => ({ ...extra, l2Norm: encoder?.l2Norm ?? 0 }) },
      (put) => {
        encoder = new CheckingEncoder(manifest, put, `global model of round ${round}`, guard);
        produce(encoder.visit);
        encoder.end();
        // The strategy's state after producing this model (server-optimiser moments, privacy
        // ledger) exists only now; the store writes `files` and `extra` after the artifact.
        const attached = attachments?.() ?? {};
        for (const [name, bytes] of Object.entries(attached.files ?? {})) {
          if (!ATTACHMENT_NAME.test(name) || name === 'meta.json' || name in files) throw new PatchFedError('bad-checkpoint', `Checkpoint attachment name '${name}' is not allowed.`, { subject: name });
          files[name] = bytes;
        }
        extra = { ...attached.extra };
      },
    );
  }

  /** The current version's saved state, for stateful strategies (Strategy.restore). */
  savedState(): SavedCheckpoint {
    const meta = this.latest.meta;
    const dir = dirname(this.store.artifactPath(meta.version));
    return {
      version: meta.version,
      round: meta.round,
      extra: { ...meta.extra },
      readFile: (name) => {
        if (!ATTACHMENT_NAME.test(name)) return null;
        try {
          return readFileSync(join(dir, name));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
          throw new PatchFedError('checkpoint-read-failed', `Cannot read ${name} of checkpoint v${meta.version}: ${(e as Error).message}`, { subject: name, cause: e });
        }
      },
    };
  }

  /**
   * Makes a version current (after its round is committed). A version just written is trusted as
   * is; one read from disk is verified first — size, sha256 and signature in one streaming pass.
   */
  setCurrent(version: number, written?: CheckpointMeta): CurrentCheckpoint {
    const meta = written && written.version === version ? written : this.verifiedMeta(version);
    if (meta.experimentId !== this.experimentId) {
      throw new PatchFedError('checkpoint-wrong-experiment', `Checkpoint v${version} belongs to experiment '${meta.experimentId}', not '${this.experimentId}'.`, { subject: String(version) });
    }
    const values = new WeightsFile(this.store.artifactPath(version), `checkpoint v${version}`);
    const recorded = meta.extra?.l2Norm;
    const l2Norm = typeof recorded === 'number' && Number.isFinite(recorded) ? recorded : normOf(values);
    // The announcement's signature covers the hash the store computed while writing: no re-hash.
    const signed = signCheckpoint(new Uint8Array(0), { experimentId: this.experimentId, version }, this.keys.signSecretKey, { size: meta.sizeBytes, sha256: meta.sha256 });
    const next: CurrentCheckpoint = { meta, values, manifest: values.manifest, l2Norm, announcement: { version, sha256: signed.sha256, size: signed.size, signature: signed.signature } };
    if (this.current && this.current.meta.version !== version) {
      this.previous?.values.close();
      this.previous = this.current;
    } else {
      this.current?.values.close();
    }
    this.current = next;
    this.signatureChecks.set(version, true);
    return next;
  }

  /** The bytes of the current or the previous version, for checkpoint downloads. */
  source(experimentId: string, version: number): CheckpointSource | undefined {
    if (experimentId !== this.experimentId) return undefined;
    const c = this.current?.meta.version === version ? this.current : this.previous?.meta.version === version ? this.previous : null;
    if (!c) return undefined;
    const path = this.store.artifactPath(version);
    return {
      size: c.meta.sizeBytes,
      read: (offset, length) => readRange(path, offset, Math.min(length, c.meta.sizeBytes - offset)),
    };
  }

  /** The current global weights decoded into memory (tests, small tools; never on the round path). */
  async weights(): Promise<NamedWeights> {
    const c = this.latest;
    return decodeWeightsFile(this.store.artifactPath(c.meta.version), { source: `checkpoint v${c.meta.version}` });
  }

  /** The current weights as a stream of runs from disk. */
  runs(): ReturnType<typeof fileRuns> {
    const c = this.latest;
    return fileRuns(this.store.artifactPath(c.meta.version), c.manifest, `checkpoint v${c.meta.version}`);
  }

  /** Artifact bytes of any stored version (dashboard download), or null. */
  artifact(version: number): Uint8Array | null {
    if (!this.store.get(version)) return null;
    try {
      return this.store.read(version).artifact;
    } catch {
      return null;
    }
  }

  /** Whether a stored version's hash and signature verify (cached: versions never change). */
  signatureValid(version: number): boolean {
    let ok = this.signatureChecks.get(version);
    if (ok === undefined) {
      try {
        this.verifiedMeta(version);
        ok = true;
      } catch {
        ok = false;
      }
      this.signatureChecks.set(version, ok);
    }
    return ok;
  }

  prune(keepLast: number): number[] {
    const removed = this.store.prune(keepLast);
    for (const v of removed) this.signatureChecks.delete(v);
    return removed;
  }

  close(): void {
    this.current?.values.close();
    this.previous?.values.close();
  }

  /** meta.json of a version after checking size, sha256 (streamed, not loaded) and signature. */
  private verifiedMeta(version: number): CheckpointMeta {
    const meta = this.store.get(version);
    if (!meta) throw new PatchFedError('checkpoint-not-found', `Checkpoint v${version} does not exist or its meta.json is unreadable.`, { subject: String(version) });
    const path = this.store.artifactPath(version);
    const hash = createHash('sha256');
    let size = 0;
    forEachBlock(path, (block) => {
      hash.update(block);
      size += block.length;
    });
    const what = `Checkpoint v${version}`;
    if (size !== meta.sizeBytes) throw new PatchFedError('checkpoint-corrupt', `${what}: weights.pfw has ${size} bytes, meta.json says ${meta.sizeBytes}.`, { subject: String(version) });
    const sha256 = hash.digest('hex');
    if (sha256 !== meta.sha256) throw new PatchFedError('checkpoint-corrupt', `${what}: sha256 of weights.pfw is ${sha256}, meta.json says ${meta.sha256}.`, { subject: String(version) });
    if (!this.store.verifySignature(meta)) throw new PatchFedError('checkpoint-signature-invalid', `${what}: signature does not verify with key '${meta.keyId}'.`, { subject: String(version) });
    return meta;
  }
}

function readRange(path: string, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(Math.max(0, length));
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < out.length) {
      const n = readSync(fd, out, done, out.length - done, offset + done);
      if (n <= 0) throw new PatchFedError('checkpoint-corrupt', `${path} ended at byte ${offset + done}.`, { subject: path });
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

function forEachBlock(path: string, visit: (block: Uint8Array) => void): void {
  const fd = openSync(path, 'r');
  try {
    const buffer = new Uint8Array(READ_BLOCK);
    for (let position = 0; ; ) {
      const n = readSync(fd, buffer, 0, buffer.length, position);
      if (n <= 0) break;
      visit(buffer.subarray(0, n));
      position += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** L2 norm of a model on disk (older checkpoints whose meta.json does not record it). */
function normOf(values: WeightsFile): number {
  let sq = 0;
  values.manifest.forEach((spec, t) => {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    for (let offset = 0; offset < size; offset += READ_BLOCK / 4) {
      const run = values.read(t, offset, Math.min(READ_BLOCK / 4, size - offset));
      for (let i = 0; i < run.length; i++) sq += (run[i] ?? 0) * (run[i] ?? 0);
    }
  });
  return Math.sqrt(sq);
}
