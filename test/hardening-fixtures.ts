/**
 * Fixtures of the hardening tests: a write-failure injector (the disk "fills up" for chosen
 * paths), seeded page corruption of a SQLite file, an offline check of every stored checkpoint,
 * and a one-shot CLI runner.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import nacl from 'tweetnacl';
import { CheckpointStore, StateDb, versionDirName } from '../coordinator/store/index.ts';
import { fingerprint, type KeyPairs } from '../shared/crypto/keys.ts';
import { EXPERIMENT_FILE, readExperimentFile } from '../shared/protocol/experiment-file.ts';
import { SeededRandom } from '../shared/random.ts';

const CLI = fileURLToPath(new URL('../cli/patchfed.js', import.meta.url));

/**
 * Makes every write to a file whose path matches `fails` throw `code` (ENOSPC: the disk is
 * full), in this process, through Node's own fs (durable-fs, the health probe, ...). SQLite
 * writes (native code) are not affected. Returns the function that gives the space back.
 */
export function injectWriteFailure(fails: (path: string) => boolean, code = 'ENOSPC'): () => void {
  const original = { openSync: fs.openSync, writeSync: fs.writeSync };
  const doomed = new Set<number>();
  const openSync = (...args: unknown[]): number => {
    const fd = Reflect.apply(original.openSync, fs, args) as number;
    const [path, flags] = args;
    if (typeof path === 'string' && typeof flags === 'string' && /[wa+]/.test(flags) && fails(path)) doomed.add(fd);
    return fd;
  };
  const writeSync = (...args: unknown[]): number => {
    if (typeof args[0] === 'number' && doomed.has(args[0])) {
      throw Object.assign(new Error(`${code}: no space left on device, write`), { code, errno: -28, syscall: 'write' });
    }
    return Reflect.apply(original.writeSync, fs, args) as number;
  };
  Object.assign(fs, { openSync, writeSync });
  syncBuiltinESMExports();
  return () => {
    Object.assign(fs, original);
    syncBuiltinESMExports();
  };
}

/** Overwrites `count` distinct pages (chosen by `seed`) of a SQLite file with random bytes. */
export function corruptPages(file: string, count: number, seed: number, pageSize = 4096): number[] {
  const pages = Math.floor(fs.statSync(file).size / pageSize);
  if (pages < count) throw new Error(`${file} has only ${pages} pages`);
  const rng = new SeededRandom(seed);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(rng.next() * pages));
  const fd = fs.openSync(file, 'r+');
  try {
    for (const page of chosen) {
      const junk = Uint8Array.from({ length: pageSize }, () => Math.floor(rng.next() * 256));
      fs.writeSync(fd, junk, 0, pageSize, page * pageSize);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return [...chosen].sort((a, b) => a - b);
}

/** Every stored checkpoint, checked offline: size, sha256, signature, and experiment.json's signature. */
export function verifyStoredCheckpoints(stateDir: string, coordinatorKeys: KeyPairs): { stored: number[]; verified: number[]; problems: string[] } {
  const keyId = fingerprint(coordinatorKeys);
  const store = new CheckpointStore({
    stateDir,
    keyId,
    signer: (b) => nacl.sign.detached(b, coordinatorKeys.signSecretKey),
    verifier: (b, sig, id) => id === keyId && nacl.sign.detached.verify(b, sig, coordinatorKeys.signPublicKey),
  });
  const stored = store.list().map((m) => m.version);
  const verified: number[] = [];
  const problems: string[] = [];
  for (const v of stored) {
    const check = store.verify(v);
    if (!check.ok) {
      problems.push(check.reason);
      continue;
    }
    try {
      readExperimentFile(fs.readFileSync(join(store.dir, versionDirName(v), EXPERIMENT_FILE)), EXPERIMENT_FILE, coordinatorKeys.signPublicKey);
      verified.push(v);
    } catch (e) {
      problems.push(`${versionDirName(v)}: ${(e as Error).message}`);
    }
  }
  return { stored, verified, problems };
}

/** Complete rounds of an experiment in a state DB (opened read-write, briefly: the coordinator must be stopped). */
export function completeRounds(stateDir: string, experimentId: string): { round: number; version: number | null; attempt: number }[] {
  const db = StateDb.open(join(stateDir, 'state.db'));
  try {
    return db
      .listRounds(experimentId)
      .filter((r) => r.status === 'complete')
      .map((r) => ({ round: r.round, version: r.checkpointVersion, attempt: r.attempt }));
  } finally {
    db.close();
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `patchfed <args>` to completion. */
export async function runCli(args: string[], timeoutMs = 120_000): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}
