/**
 * Versioned, content-hashed, signed global checkpoints under `<stateDir>/checkpoints/`:
 *
 *   checkpoints/v000007/weights.pfw   opaque artifact bytes (the caller encodes the weights)
 *   checkpoints/v000007/meta.json     CheckpointMeta (version, round, sha256, signature, ...)
 *
 * A version is published by building it in `checkpoints/.tmp-v000007-<pid>-<rand>/` (each file
 * fsynced, then the dir), renaming that dir to `v000007` and fsyncing `checkpoints/`. So a
 * `vNNNNNN` dir is either complete or absent; a crash leaves at most a `.tmp-*` dir, which
 * recover() deletes. Deletions (retention, orphan removal) first rename to `.tmp-*` for the same
 * reason. Corrupt checkpoints are moved to `<stateDir>/quarantine/`, never deleted, and their
 * versions are never reused. One writer per stateDir is assumed (the coordinator process).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import {
  ARTIFACT_FILE,
  CHECKPOINT_FORMAT,
  META_FILE,
  checkpointMetaSchema,
  checkpointSigningPayload,
  parseVersionDirName,
  versionDirName,
  type CheckpointMeta,
} from './checkpoint-meta.ts';
import {
  TEMP_PREFIX,
  fileError,
  fsyncDir,
  isCode,
  removeQuietly,
  tempName,
  withDefaults,
  writeFileAtomic,
  writeFileDurable,
  type FileIO,
} from './durable-fs.ts';

export type Signer = (bytes: Uint8Array) => Uint8Array;
export type Verifier = (bytes: Uint8Array, signature: Uint8Array, keyId: string) => boolean;

export interface StoreLogEvent {
  kind: 'checkpoint-temp-removed' | 'checkpoint-quarantined' | 'checkpoint-fallback' | 'checkpoint-removed';
  message: string;
  version?: number;
}

export interface CheckpointStoreOptions {
  stateDir: string;
  signer: Signer;
  /** Recorded in meta.json so verifiers know which public key to use. */
  keyId: string;
  /** When given, read() also checks the signature. */
  verifier?: Verifier;
  io?: Partial<FileIO>;
  log?: (event: StoreLogEvent) => void;
  now?: () => Date;
}

export interface WriteCheckpointInput {
  experimentId: string;
  round: number;
  artifact: Uint8Array;
  best?: boolean;
  extra?: Record<string, unknown>;
  /** More files published in the version directory with the artifact (e.g. experiment.json). */
  files?: Record<string, Uint8Array>;
}

export type VerifyResult = { ok: true; meta: CheckpointMeta } | { ok: false; reason: string };

export interface StoreRecoveryReport {
  removedTemp: string[];
  /** Everything recover() did, in order, as also passed to the `log` option. */
  events: StoreLogEvent[];
  quarantined: { version: number; reason: string }[];
  /** Newest checkpoint whose hash was verified, if any. */
  latest?: CheckpointMeta;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export class CheckpointStore {
  readonly dir: string;
  readonly quarantineDir: string;
  private readonly io: FileIO;
  private log: (event: StoreLogEvent) => void;
  private readonly now: () => Date;

  constructor(private readonly options: CheckpointStoreOptions) {
    if (typeof options.keyId !== 'string' || options.keyId.length === 0) {
      throw new PatchFedError('bad-store-config', 'Checkpoint store needs a non-empty keyId.', { subject: 'keyId' });
    }
    this.dir = join(options.stateDir, 'checkpoints');
    this.quarantineDir = join(options.stateDir, 'quarantine');
    this.io = withDefaults(options.io);
    this.log = options.log ?? (() => {});
    this.now = options.now ?? (() => new Date());
    try {
      fs.mkdirSync(this.dir, { recursive: true });
      fs.mkdirSync(this.quarantineDir, { recursive: true });
    } catch (e) {
      throw fileError('checkpoint-store-unavailable', `Cannot create checkpoint directory ${this.dir}`, e);
    }
  }

  /** Publishes the next version durably; on failure nothing is left behind and earlier versions are untouched. */
  write(input: WriteCheckpointInput): CheckpointMeta {
    checkWriteInput(input);
    return this.writeStreaming(input, (put) => put(input.artifact));
  }

  /**
   * Like write(), but the artifact is produced in pieces by `produce` (each piece is written and
   * hashed as it comes, so a 1 GB model never sits in memory whole). `produce` may throw to
   * abandon the version (say, an aggregate that failed its checks): nothing is published.
   * The artifact is hashed once, while it is written; that digest is what gets signed.
   */
  writeStreaming(
    input: Omit<WriteCheckpointInput, 'artifact' | 'extra'> & { extra?: Record<string, unknown> | (() => Record<string, unknown>) },
    produce: (put: (bytes: Uint8Array) => void) => void,
  ): CheckpointMeta {
    checkWriteInput({ ...input, extra: undefined, artifact: new Uint8Array(0) });
    const version = this.nextVersion();
    const name = versionDirName(version);
    const tmp = join(this.dir, tempName(name));
    const final = join(this.dir, name);
    let published = false;
    try {
      let created = false;
      try {
        this.io.mkdirSync(tmp);
        created = true;
      } finally {
        if (!created) removeQuietly(this.io, tmp);
      }
      const hash = createHash('sha256');
      let sizeBytes = 0;
      const fd = this.io.openSync(join(tmp, ARTIFACT_FILE), 'wx', 0o644);
      try {
        produce((bytes) => {
          let done = 0;
          while (done < bytes.length) {
            const n = this.io.writeSync(fd, bytes, done, bytes.length - done);
            if (n <= 0) throw new Error(`write to ${ARTIFACT_FILE} made no progress`);
            done += n;
          }
          hash.update(bytes);
          sizeBytes += bytes.length;
        });
        this.io.fsyncSync(fd);
      } finally {
        this.io.closeSync(fd);
      }
      const sha256 = hash.digest('hex');
      const signed = { experimentId: input.experimentId, version, round: input.round, sha256, sizeBytes };
      const signature = this.sign(signed, name);
      const extra = typeof input.extra === 'function' ? input.extra() : input.extra;
      const meta: CheckpointMeta = {
        format: CHECKPOINT_FORMAT,
        ...signed,
        createdAt: this.now().toISOString(),
        artifact: ARTIFACT_FILE,
        signature: Buffer.from(signature).toString('base64'),
        keyId: this.options.keyId,
        best: input.best ?? false,
        ...(extra !== undefined ? { extra } : {}),
      };
      for (const [file, bytes] of Object.entries(input.files ?? {})) writeFileDurable(this.io, join(tmp, file), bytes);
      writeFileDurable(this.io, join(tmp, META_FILE), encodeMeta(meta));
      fsyncDir(this.io, tmp);
      // rename(2) would silently replace an *empty* dir; never overwrite a published version.
      if (fs.existsSync(final)) throw Object.assign(new Error(`${final} already exists (another writer?)`), { code: 'EEXIST' });
      this.io.renameSync(tmp, final);
      published = true;
      fsyncDir(this.io, this.dir);
      return meta;
    } catch (e) {
      if (!published) removeQuietly(this.io, tmp);
      if (e instanceof PatchFedError && !e.cause) throw e; // produce() refused the content, or signing failed
      throw fileError('checkpoint-write-failed', `Could not write checkpoint ${name} (round ${input.round}) to ${this.dir}; earlier checkpoints are intact`, e);
    }
  }

  private sign(signed: Pick<CheckpointMeta, 'experimentId' | 'version' | 'round' | 'sha256' | 'sizeBytes'>, name: string): Uint8Array {
    let signature: Uint8Array;
    try {
      signature = this.options.signer(checkpointSigningPayload(signed));
    } catch (e) {
      throw new PatchFedError('checkpoint-sign-failed', `Could not sign checkpoint ${name}: ${(e as Error)?.message ?? String(e)}`);
    }
    if (!(signature instanceof Uint8Array) || signature.length === 0) {
      throw new PatchFedError('checkpoint-sign-failed', `Signer returned no signature for checkpoint ${name}.`);
    }
    return signature;
  }

  /** Whether meta.json's signature verifies (needs a verifier; false without one). */
  verifySignature(meta: CheckpointMeta): boolean {
    if (!this.options.verifier) return false;
    return this.options.verifier(checkpointSigningPayload(meta), Buffer.from(meta.signature, 'base64'), meta.keyId);
  }

  /** Path of a version's artifact (it may not exist). */
  artifactPath(version: number): string {
    return join(this.dir, versionDirName(version), ARTIFACT_FILE);
  }

  /** All published checkpoints with a readable meta.json, oldest first. */
  list(): CheckpointMeta[] {
    const out: CheckpointMeta[] = [];
    for (const version of this.versionsOnDisk()) {
      const meta = this.tryReadMeta(version);
      if (meta.ok) out.push(meta.meta);
    }
    return out;
  }

  latest(): CheckpointMeta | undefined {
    const all = this.list();
    return all[all.length - 1];
  }

  get(version: number): CheckpointMeta | undefined {
    const meta = this.tryReadMeta(version);
    return meta.ok ? meta.meta : undefined;
  }

  /** Artifact bytes after checking size, sha256 and (with a verifier) the signature. */
  read(version: number): { meta: CheckpointMeta; artifact: Uint8Array } {
    const name = versionDirName(version);
    const metaResult = this.tryReadMeta(version);
    if (!metaResult.ok) throw new PatchFedError('checkpoint-corrupt', `Checkpoint ${name}: ${metaResult.reason}`, { subject: name });
    const meta = metaResult.meta;
    const path = join(this.dir, name, ARTIFACT_FILE);
    let artifact: Uint8Array;
    try {
      artifact = fs.readFileSync(path);
    } catch (e) {
      if (isCode(e, 'ENOENT')) throw new PatchFedError('checkpoint-corrupt', `Checkpoint ${name}: ${ARTIFACT_FILE} is missing.`, { subject: name });
      throw fileError('checkpoint-read-failed', `Cannot read ${path}`, e);
    }
    if (artifact.length !== meta.sizeBytes) {
      throw new PatchFedError('checkpoint-corrupt', `Checkpoint ${name}: ${ARTIFACT_FILE} has ${artifact.length} bytes, meta.json says ${meta.sizeBytes}.`, { subject: name });
    }
    const actual = sha256Hex(artifact);
    if (actual !== meta.sha256) {
      throw new PatchFedError('checkpoint-corrupt', `Checkpoint ${name}: sha256 of ${ARTIFACT_FILE} is ${actual}, meta.json says ${meta.sha256}.`, { subject: name });
    }
    if (this.options.verifier) {
      const signature = Buffer.from(meta.signature, 'base64');
      if (!this.options.verifier(checkpointSigningPayload(meta), signature, meta.keyId)) {
        throw new PatchFedError('checkpoint-signature-invalid', `Checkpoint ${name}: signature does not verify with key '${meta.keyId}'.`, { subject: name });
      }
    }
    return { meta, artifact };
  }

  /** read() as a result instead of an exception. */
  verify(version: number): VerifyResult {
    try {
      return { ok: true, meta: this.read(version).meta };
    } catch (e) {
      if (e instanceof PatchFedError && (e.code === 'checkpoint-corrupt' || e.code === 'checkpoint-signature-invalid')) {
        return { ok: false, reason: e.message };
      }
      throw e;
    }
  }

  /** Sets or clears the `best` flag (meta.json is replaced atomically). */
  markBest(version: number, best = true): CheckpointMeta {
    const name = versionDirName(version);
    const result = this.tryReadMeta(version);
    if (!result.ok) throw new PatchFedError('checkpoint-not-found', `Cannot mark checkpoint ${name} as best: ${result.reason}`, { subject: name });
    const meta = { ...result.meta, best };
    try {
      writeFileAtomic(this.io, join(this.dir, name, META_FILE), encodeMeta(meta));
    } catch (e) {
      throw fileError('checkpoint-write-failed', `Could not update ${name}/${META_FILE}`, e);
    }
    return meta;
  }

  /**
   * Keeps the newest `keepLast` checkpoints, the latest and every `best` one; deletes the rest.
   * Returns the deleted versions.
   */
  prune(keepLast: number): number[] {
    if (!(Number.isSafeInteger(keepLast) && keepLast >= 1)) {
      throw new PatchFedError('bad-store-config', `keepLast must be an integer >= 1, got ${keepLast}.`, { subject: 'keepLast' });
    }
    const all = this.list();
    const keep = new Set(all.slice(-keepLast).map((m) => m.version));
    const removed: number[] = [];
    for (const meta of all) {
      if (keep.has(meta.version) || meta.best) continue;
      this.remove(meta.version, 'retention');
      removed.push(meta.version);
    }
    return removed;
  }

  /** Deletes a version: rename to a temp name first so a crash mid-delete leaves only a temp dir. */
  remove(version: number, why: string): void {
    const name = versionDirName(version);
    const doomed = join(this.dir, tempName(`${name}-deleted`));
    try {
      this.io.renameSync(join(this.dir, name), doomed);
      fsyncDir(this.io, this.dir);
    } catch (e) {
      if (isCode(e, 'ENOENT')) return;
      throw fileError('checkpoint-remove-failed', `Could not remove checkpoint ${name}`, e);
    }
    removeQuietly(this.io, doomed);
    this.log({ kind: 'checkpoint-removed', version, message: `Removed checkpoint ${name} (${why}).` });
  }

  /** Moves a version out of the store for inspection; its number is never reused. */
  quarantine(version: number, reason: string): void {
    const name = versionDirName(version);
    const stamp = this.now().toISOString().replace(/[:.]/g, '-');
    const target = join(this.quarantineDir, `${name}.${stamp}`);
    try {
      this.io.renameSync(join(this.dir, name), target);
      fsyncDir(this.io, this.dir);
      fsyncDir(this.io, this.quarantineDir);
    } catch (e) {
      if (isCode(e, 'ENOENT')) return;
      throw fileError('checkpoint-remove-failed', `Could not quarantine checkpoint ${name}`, e);
    }
    this.log({ kind: 'checkpoint-quarantined', version, message: `Quarantined checkpoint ${name} to ${target}: ${reason}` });
  }

  /**
   * Start-up repair: delete temp leftovers, quarantine version dirs with an unreadable meta.json
   * or a missing/mis-sized artifact, then verify the newest by hash and fall back to the previous
   * one (quarantining each corrupt newest) until one verifies.
   */
  recover(): StoreRecoveryReport {
    const report: StoreRecoveryReport = { removedTemp: [], quarantined: [], events: [] };
    const log = this.log;
    this.log = (event) => {
      report.events.push(event);
      log(event);
    };
    try {
      this.recoverInto(report);
    } finally {
      this.log = log;
    }
    return report;
  }

  private recoverInto(report: StoreRecoveryReport): void {
    for (const entry of fs.readdirSync(this.dir)) {
      if (entry.startsWith(TEMP_PREFIX)) {
        this.io.rmSync(join(this.dir, entry));
        report.removedTemp.push(entry);
        this.log({ kind: 'checkpoint-temp-removed', message: `Removed leftover temporary ${join(this.dir, entry)}.` });
      }
    }
    const versions = this.versionsOnDisk();
    for (const version of versions) {
      // meta.json replacements (markBest) leave temp files inside version dirs.
      const vdir = join(this.dir, versionDirName(version));
      for (const entry of safeReaddir(vdir)) {
        if (entry.startsWith(TEMP_PREFIX)) {
          this.io.rmSync(join(vdir, entry));
          report.removedTemp.push(`${versionDirName(version)}/${entry}`);
          this.log({ kind: 'checkpoint-temp-removed', version, message: `Removed leftover temporary ${join(vdir, entry)}.` });
        }
      }
      const problem = this.structuralProblem(version);
      if (problem !== undefined) this.quarantineInto(report, version, problem);
    }
    if (report.removedTemp.length > 0) fsyncDir(this.io, this.dir);
    let intact = this.list();
    for (let newest = intact.at(-1); newest !== undefined; newest = intact.at(-1)) {
      const check = this.verify(newest.version);
      if (check.ok) {
        report.latest = check.meta;
        break;
      }
      this.quarantineInto(report, newest.version, check.reason);
      intact = intact.slice(0, -1);
      const previous = intact[intact.length - 1];
      this.log({
        kind: 'checkpoint-fallback',
        version: newest.version,
        message: `Latest checkpoint ${versionDirName(newest.version)} is corrupt; falling back to ${previous ? versionDirName(previous.version) : 'no checkpoint'}.`,
      });
    }
  }

  /** Next version: one above every version ever published here, including quarantined ones. */
  nextVersion(): number {
    let max = 0;
    for (const v of this.versionsOnDisk()) max = Math.max(max, v);
    for (const entry of safeReaddir(this.quarantineDir)) {
      const [stem = ''] = entry.split('.');
      const v = parseVersionDirName(stem);
      if (v !== undefined) max = Math.max(max, v);
    }
    return max + 1;
  }

  private quarantineInto(report: StoreRecoveryReport, version: number, reason: string): void {
    this.quarantine(version, reason);
    report.quarantined.push({ version, reason });
  }

  private versionsOnDisk(): number[] {
    return safeReaddir(this.dir)
      .map(parseVersionDirName)
      .filter((v): v is number => v !== undefined)
      .sort((a, b) => a - b);
  }

  private structuralProblem(version: number): string | undefined {
    const meta = this.tryReadMeta(version);
    if (!meta.ok) return meta.reason;
    try {
      const size = fs.statSync(join(this.dir, versionDirName(version), ARTIFACT_FILE)).size;
      if (size !== meta.meta.sizeBytes) return `${ARTIFACT_FILE} has ${size} bytes, meta.json says ${meta.meta.sizeBytes}`;
    } catch {
      return `${ARTIFACT_FILE} is missing`;
    }
    return undefined;
  }

  private tryReadMeta(version: number): { ok: true; meta: CheckpointMeta } | { ok: false; reason: string } {
    const name = versionDirName(version);
    let text: string;
    try {
      text = fs.readFileSync(join(this.dir, name, META_FILE), 'utf8');
    } catch (e) {
      if (isCode(e, 'ENOENT', 'ENOTDIR')) return { ok: false, reason: `${META_FILE} is missing` };
      throw fileError('checkpoint-read-failed', `Cannot read ${join(this.dir, name, META_FILE)}`, e);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { ok: false, reason: `${META_FILE} is not valid JSON` };
    }
    const parsed = checkpointMetaSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!; // zod: a failed parse has at least one issue
      return { ok: false, reason: `${META_FILE} field '${issue.path.join('.')}': ${issue.message}` };
    }
    if (parsed.data.version !== version) {
      return { ok: false, reason: `${META_FILE} says version ${parsed.data.version} but the directory is ${name}` };
    }
    return { ok: true, meta: parsed.data };
  }
}

function encodeMeta(meta: CheckpointMeta): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(meta, null, 2) + '\n');
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (e) {
    if (isCode(e, 'ENOENT')) return [];
    throw e;
  }
}

function checkWriteInput(input: WriteCheckpointInput): void {
  if (typeof input.experimentId !== 'string' || input.experimentId.length === 0) {
    throw new PatchFedError('bad-checkpoint', 'Checkpoint needs a non-empty experimentId.', { subject: 'experimentId' });
  }
  if (!(Number.isSafeInteger(input.round) && input.round >= 0)) {
    throw new PatchFedError('bad-checkpoint', `Checkpoint round must be a non-negative integer, got ${input.round}.`, { subject: 'round' });
  }
  if (!(input.artifact instanceof Uint8Array)) {
    throw new PatchFedError('bad-checkpoint', 'Checkpoint artifact must be a Uint8Array.', { subject: 'artifact' });
  }
  for (const name of Object.keys(input.files ?? {})) {
    if (!/^[a-z][a-z0-9-]*\.json$/.test(name) || name === META_FILE) {
      throw new PatchFedError('bad-checkpoint', `Extra checkpoint file name '${name}' is not allowed (lower-case <name>.json, not ${META_FILE}).`, { subject: name });
    }
  }
}
