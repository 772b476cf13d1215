/**
 * `patchfed coordinator --config … --repair`: the way out of a corrupt (or lost) state DB.
 *
 *  1. Decide first, change nothing: verify every checkpoint's size, sha256 and signature with
 *     the coordinator key, and its experiment.json (signed, and describing the configured
 *     experiment); pick the chain of rounds to rebuild (store/state-rebuild.ts).
 *  2. Move the damaged state.db (and its -wal/-shm) aside — never deleted — and quarantine the
 *     checkpoints that failed verification.
 *  3. Create a fresh DB with the experiment record and one complete round per verified
 *     checkpoint, so the next start continues after the last verified checkpoint.
 * Site updates, per-site metrics and the event log of the old DB are not recoverable from
 * checkpoints; the moved-aside file keeps them for forensics.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { PatchFedError } from '../../shared/errors.ts';
import type { CoordinatorConfig } from '../../shared/config/coordinator.ts';
import { canonicalJson } from '../../shared/crypto/encoding.ts';
import type { ExperimentDescription } from '../../shared/protocol/messages.ts';
import { CheckpointStore, StateDb, parseVersionDirName, versionDirName } from '../store/index.ts';
import { moveStateDbAside, planRebuild, restoreRounds, type CheckpointVerdict } from '../store/state-rebuild.ts';
import { describeExperiment, ensureExperimentRecord } from './experiment.ts';
import { prepareCoordinator } from './setup.ts';
import { lockStateDir } from './state-lock.ts';

export interface RepairReport {
  dbPath: string;
  /** Why the DB was rebuilt, or null when it was intact (nothing done). */
  reason: string | null;
  /** Where the old DB files went. */
  movedAside: string[];
  verdicts: CheckpointVerdict[];
  /** Rounds restored, with their checkpoint versions. */
  restored: { round: number; version: number }[];
  /** Versions moved to quarantine/ (never deleted): failed verification, or unreadable. */
  quarantined: number[];
  /** Versions whose meta.json or artifact could not even be read (quarantined before verifying). */
  unreadable: { version: number; reason: string }[];
}

/**
 * A state.db that was just created while signed checkpoints exist means the old one was lost:
 * starting would treat every checkpoint as never committed and remove them. Refuse instead.
 */
export function refuseLostStateDb(stateDir: string, dbPath: string): void {
  let versions: number[] = [];
  try {
    versions = readdirSync(join(stateDir, 'checkpoints')).map(parseVersionDirName).filter((v): v is number => v !== undefined);
  } catch {
    return; // no checkpoints directory: a new state directory
  }
  if (versions.length === 0) return;
  throw new PatchFedError(
    'state-db-missing',
    `State database ${dbPath} is new, but ${join(stateDir, 'checkpoints')} holds ${versions.length} signed checkpoint(s) (up to ${versionDirName(Math.max(...versions))}); starting would discard them. ` +
      `Run 'patchfed coordinator --config <your config> --repair' to rebuild the state from them.`,
    { subject: dbPath },
  );
}

/** What must match between the configured experiment and a checkpoint's signed description. */
function identityMismatch(configured: ExperimentDescription, found: ExperimentDescription): string | null {
  const keys = ['task', 'labels', 'modalities', 'model', 'strategy'] as const;
  const changed = keys.filter((k) => canonicalJson(configured[k]) !== canonicalJson(found[k]));
  return changed.length === 0 ? null : `describes a different ${changed.join(', ')} than the config`;
}

/** Why the DB needs rebuilding, or null when it is intact and holds the experiment's rounds. */
function damage(dbPath: string, experimentId: string): string | null {
  if (!existsSync(dbPath)) return 'the state database is missing';
  const problem = StateDb.checkIntegrity(dbPath, 'full');
  if (problem !== null) return `the state database is corrupt (${problem})`;
  let db: StateDb;
  try {
    db = StateDb.open(dbPath);
  } catch (e) {
    return (e as Error).message;
  }
  try {
    return db.lastCompleted(experimentId) ? null : `the state database holds no completed round of experiment '${experimentId}'`;
  } finally {
    db.close();
  }
}

export function repairCoordinatorState(config: CoordinatorConfig | unknown, baseDir?: string, now: () => Date = () => new Date()): RepairReport {
  const setup = prepareCoordinator(config, baseDir);
  const exp = setup.config.experiment;
  const dbPath = join(setup.stateDir, 'state.db');
  const unlock = lockStateDir(setup.stateDir);
  try {
    const report: RepairReport = { dbPath, reason: damage(dbPath, exp.id), movedAside: [], verdicts: [], restored: [], quarantined: [], unreadable: [] };
    if (report.reason === null) return report;

    const keys = setup.keys;
    const store = new CheckpointStore({
      stateDir: setup.stateDir,
      keyId: setup.keyId,
      signer: (bytes) => nacl.sign.detached(bytes, keys.signSecretKey),
      verifier: (bytes, signature, id) => id === setup.keyId && nacl.sign.detached.verify(bytes, signature, keys.signPublicKey),
      now,
    });
    // Leftover temporaries and structurally broken versions (unreadable meta.json) first.
    const recovered = store.recover();
    report.quarantined.push(...recovered.quarantined.map((q) => q.version));
    const configured = describeExperiment(exp);
    const plan = planRebuild(store, {
      experimentId: exp.id,
      coordinatorSignPublicKey: keys.signPublicKey,
      describesConfiguredExperiment: (found) => identityMismatch(configured, found),
    });
    report.verdicts = plan.verdicts;
    report.unreadable = recovered.quarantined;

    report.movedAside = moveStateDbAside(dbPath, now());
    for (const v of plan.verdicts) {
      if (v.ok) continue;
      store.quarantine(v.version, `--repair: ${v.reason ?? 'not verified'}`);
      report.quarantined.push(v.version);
    }
    const db = StateDb.open(dbPath);
    try {
      ensureExperimentRecord(db, exp);
      restoreRounds(db, exp.id, plan.chain);
      report.restored = plan.chain.map((m) => ({ round: m.round, version: m.version }));
      const last = plan.chain[plan.chain.length - 1];
      db.recordEvent({
        kind: 'state-repaired',
        experimentId: exp.id,
        message:
          `State rebuilt by --repair (${report.reason}): ${plan.chain.length} verified checkpoint(s)` +
          (last ? `, continuing after round ${last.round} (${versionDirName(last.version)})` : ', none usable: the experiment starts over') +
          `; ${report.quarantined.length} checkpoint(s) quarantined; old DB moved to ${report.movedAside[0] ?? '(none)'}.`,
      });
    } finally {
      db.close();
    }
    return report;
  } finally {
    unlock();
  }
}
