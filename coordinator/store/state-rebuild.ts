/**
 * Rebuilding the state DB from the signed checkpoints on disk (`patchfed coordinator --repair`).
 * Checkpoints are self-describing: meta.json (version, round, sha256, signature) and
 * experiment.json (the signed experiment description) sit next to weights.pfw, so the rounds an
 * experiment completed can be recovered from them alone, after the coordinator's key verified
 * every hash and signature.
 *
 * Nothing is deleted: the damaged DB files are renamed aside and checkpoints that fail
 * verification go to quarantine/ like any corrupt checkpoint.
 */
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../shared/errors.ts';
import { EXPERIMENT_FILE, readExperimentFile } from '../../shared/protocol/experiment-file.ts';
import type { ExperimentDescription } from '../../shared/protocol/messages.ts';
import { versionDirName, type CheckpointMeta } from './checkpoint-meta.ts';
import type { CheckpointStore } from './checkpoints.ts';
import type { StateDb } from './state-db.ts';

export interface CheckpointVerdict {
  version: number;
  round: number;
  ok: boolean;
  /** Why it cannot be used (ok = false), or a note (e.g. no experiment.json in an older checkpoint). */
  reason?: string;
}

export interface RebuildPlan {
  /** Checkpoints the rebuilt history will reference, oldest first: versions and rounds both increase. */
  chain: CheckpointMeta[];
  /** Every checkpoint looked at, with its verdict. */
  verdicts: CheckpointVerdict[];
}

export interface PlanOptions {
  experimentId: string;
  /** The coordinator's signing key: experiment.json must be signed by it. */
  coordinatorSignPublicKey: Uint8Array;
  /** Checks a verified experiment description against the configured experiment; null when it matches. */
  describesConfiguredExperiment: (description: ExperimentDescription) => string | null;
}

/**
 * Verifies every stored checkpoint (size, sha256 and signature through the store's verifier;
 * experiment.json's signature and content) and picks the chain to rebuild from: in version
 * order, each checkpoint of the experiment whose round is past the previous one kept.
 * Read-only: deciding comes before changing anything.
 */
export function planRebuild(store: CheckpointStore, opts: PlanOptions): RebuildPlan {
  const chain: CheckpointMeta[] = [];
  const verdicts: CheckpointVerdict[] = [];
  for (const meta of store.list()) {
    const verdict = (ok: boolean, reason?: string): void => void verdicts.push({ version: meta.version, round: meta.round, ok, ...(reason ? { reason } : {}) });
    const check = store.verify(meta.version);
    if (!check.ok) {
      verdict(false, check.reason);
      continue;
    }
    if (meta.experimentId !== opts.experimentId) {
      verdict(false, `belongs to experiment '${meta.experimentId}', not the configured '${opts.experimentId}'`);
      continue;
    }
    const problem = experimentFileProblem(store, meta, opts);
    if (problem !== null && !problem.note) {
      verdict(false, problem.reason);
      continue;
    }
    const previous = chain[chain.length - 1];
    if (previous && meta.round <= previous.round) {
      verdict(false, `round ${meta.round} does not follow round ${previous.round} of ${versionDirName(previous.version)} (never committed)`);
      continue;
    }
    chain.push(meta);
    verdict(true, problem?.reason);
  }
  return { chain, verdicts };
}

function experimentFileProblem(store: CheckpointStore, meta: CheckpointMeta, opts: PlanOptions): { reason: string; note?: boolean } | null {
  const file = join(store.dir, versionDirName(meta.version), EXPERIMENT_FILE);
  if (!existsSync(file)) return { reason: `no ${EXPERIMENT_FILE} (written before checkpoints carried one); its signed meta.json names the experiment`, note: true };
  try {
    const { description } = readExperimentFile(readFileSync(file), file, opts.coordinatorSignPublicKey);
    if (description.id !== opts.experimentId) return { reason: `${EXPERIMENT_FILE} describes experiment '${description.id}'` };
    const mismatch = opts.describesConfiguredExperiment(description);
    return mismatch === null ? null : { reason: `${EXPERIMENT_FILE} ${mismatch}` };
  } catch (e) {
    return { reason: errorMessage(e) };
  }
}

/**
 * Renames `dbPath` and its -wal / -shm companions to `<dbPath>.corrupt-<stamp>` (+ the same
 * suffixes, so SQLite can still open the set for forensics). Returns the new names.
 */
export function moveStateDbAside(dbPath: string, now: Date = new Date()): string[] {
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  const moved: string[] = [];
  for (const suffix of ['', '-wal', '-shm']) {
    const from = `${dbPath}${suffix}`;
    if (!existsSync(from)) continue;
    const to = `${dbPath}.corrupt-${stamp}${suffix}`;
    renameSync(from, to);
    moved.push(to);
  }
  return moved;
}

/** Records the chain as the experiment's completed rounds in a fresh DB (the experiment record must exist). */
export function restoreRounds(db: StateDb, experimentId: string, chain: readonly CheckpointMeta[]): void {
  db.transaction(() => {
    for (const meta of chain) db.restoreCompletedRound({ experimentId, round: meta.round, checkpointVersion: meta.version, completedAt: meta.createdAt });
  });
}
