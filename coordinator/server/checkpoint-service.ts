/**
 * The global model as the coordinator serves it: the CheckpointStore (durable, signed on disk)
 * plus an in-memory copy of the current version's bytes, decoded weights and the signed
 * announcement sites verify against the pinned coordinator key. The previous version's bytes
 * stay available for a while so a site finishing a download of it is not cut off.
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../../shared/errors.ts';
import { decodeWeights, encodeWeights } from '../../shared/codec/index.ts';
import type { KeyPairs } from '../../shared/crypto/keys.ts';
import { signCheckpoint } from '../../shared/crypto/seal.ts';
import { EXPERIMENT_FILE } from '../../shared/protocol/experiment-file.ts';
import type { Message } from '../../shared/protocol/messages.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { CheckpointStore, type CheckpointMeta } from '../store/index.ts';

export type CheckpointAnnouncement = Message<'round-task'>['checkpoint'];

export interface CurrentCheckpoint {
  meta: CheckpointMeta;
  bytes: Uint8Array;
  weights: NamedWeights;
  announcement: CheckpointAnnouncement;
}

export class CheckpointService {
  readonly store: CheckpointStore;
  private current: CurrentCheckpoint | null = null;
  private previous: { version: number; bytes: Uint8Array } | null = null;
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

  /** Encodes and durably writes a new version (not yet current: the DB commit comes first). */
  write(round: number, weights: NamedWeights): { meta: CheckpointMeta; bytes: Uint8Array } {
    const bytes = encodeWeights(weights, `global model of round ${round}`);
    const meta = this.store.write({ experimentId: this.experimentId, round, artifact: bytes, files: { [EXPERIMENT_FILE]: this.experimentFile } });
    return { meta, bytes };
  }

  /** Makes a version current (after its round is committed), from bytes in hand or from disk. */
  setCurrent(version: number, written?: { meta: CheckpointMeta; bytes: Uint8Array; weights?: NamedWeights }): CurrentCheckpoint {
    let meta: CheckpointMeta;
    let bytes: Uint8Array;
    if (written && written.meta.version === version) {
      ({ meta, bytes } = written);
    } else {
      ({ meta, artifact: bytes } = this.store.read(version)); // checks size, hash and signature
    }
    if (meta.experimentId !== this.experimentId) {
      throw new PatchFedError('checkpoint-wrong-experiment', `Checkpoint v${version} belongs to experiment '${meta.experimentId}', not '${this.experimentId}'.`, { subject: String(version) });
    }
    const weights = written?.weights ?? decodeWeights(bytes, { source: `checkpoint v${version}` });
    const signed = signCheckpoint(bytes, { experimentId: this.experimentId, version }, this.keys.signSecretKey);
    if (this.current && this.current.meta.version !== version) this.previous = { version: this.current.meta.version, bytes: this.current.bytes };
    this.current = { meta, bytes, weights, announcement: { version, sha256: signed.sha256, size: signed.size, signature: signed.signature } };
    this.signatureChecks.set(version, true);
    return this.current;
  }

  /** Bytes for checkpoint-request: the current or the previous version of this experiment. */
  lookup(experimentId: string, version: number): Uint8Array | undefined {
    if (experimentId !== this.experimentId) return undefined;
    if (this.current?.meta.version === version) return this.current.bytes;
    if (this.previous?.version === version) return this.previous.bytes;
    return undefined;
  }

  /** Artifact bytes of any stored version (dashboard download), or null. */
  artifact(version: number): Uint8Array | null {
    if (this.current?.meta.version === version) return this.current.bytes;
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
      ok = this.store.verify(version).ok;
      this.signatureChecks.set(version, ok);
    }
    return ok;
  }

  prune(keepLast: number): number[] {
    const removed = this.store.prune(keepLast);
    for (const v of removed) this.signatureChecks.delete(v);
    return removed;
  }
}
