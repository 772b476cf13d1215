/**
 * Chooses and activates the compute backend, then proves its gradients before anyone trains on it.
 */
import * as tf from '@tensorflow/tfjs-core';
import './gradients/index.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { recordActiveBackend } from './active.ts';
import { BACKEND_CHOICES, defaultCandidates, type BackendCandidate, type BackendChoice, type LoadedBackend } from './candidates.ts';
import { gradientSelfCheck, type SelfCheckResult } from './self-check.ts';

export interface BackendReport {
  /** tf backend name in use (tf.getBackend()). */
  name: string;
  choice: BackendChoice;
  package: string;
  version: string;
  gpu: boolean;
  /** TF_Version of the TensorFlow C library behind the 'tensorflow' backend; null on the others. */
  tensorflowVersion: string | null;
  selfCheck: { passed: boolean; maxRelError: number; detail: string };
  notes: string[];
}

export type BackendLog = (message: string) => void;

export interface SelectionDeps {
  /** Candidate table per choice (tests pass fakes). */
  candidates?: (choice: BackendChoice) => BackendCandidate[];
  /** Makes a backend current; false when it cannot initialise. */
  activate?: (backendName: string) => Promise<boolean>;
  selfCheck?: (backendName: string) => Promise<SelfCheckResult>;
}

export function parseBackendChoice(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new PatchFedError('backend-choice', `Unknown backend '${value}'; choose one of ${BACKEND_CHOICES.join(', ')}.`, { subject: value });
}

/**
 * tf.setBackend, minus the stock cpu backend's "install tfjs-node" banner on first use: PatchFed
 * logs which backend runs and why, and the banner would contradict a deliberate choice.
 */
async function activateQuietly(name: string): Promise<boolean> {
  const ok = await tf.setBackend(name);
  if (ok && name === 'cpu') (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  return ok;
}

/**
 * Tries the candidates for `choice` in order, activates the first that loads, and runs the
 * gradient self-check on it. Falls back (with a note) when an optional backend is missing;
 * throws PatchFedError only when nothing the choice allows can run.
 * The self-check result is reported, not enforced: inference may use a backend that fails it,
 * training must call assertTrainableBackend(report).
 */
export async function selectBackend(choice: BackendChoice, log?: BackendLog, deps: SelectionDeps = {}): Promise<BackendReport> {
  const candidates = (deps.candidates ?? defaultCandidates)(choice);
  const activate = deps.activate ?? activateQuietly;
  const selfCheck = deps.selfCheck ?? gradientSelfCheck;
  const notes: string[] = [];
  const note = (message: string) => {
    notes.push(message);
    log?.(message);
  };

  let chosen: LoadedBackend | null = null;
  let chosenIndex = -1;
  for (const [index, candidate] of candidates.entries()) {
    const result = await candidate.load();
    if (!result.ok) {
      note(`${candidate.id}: ${result.reason}`);
      continue;
    }
    let activated = false;
    try {
      activated = await activate(result.backend.backendName);
    } catch (e) {
      note(`${candidate.id}: could not initialise backend '${result.backend.backendName}': ${e instanceof Error ? e.message : String(e)}`);
      continue;
    }
    if (!activated) {
      note(`${candidate.id}: could not initialise backend '${result.backend.backendName}'`);
      continue;
    }
    chosen = result.backend;
    chosenIndex = index;
    for (const n of result.backend.notes) note(n);
    break;
  }
  if (chosen === null) {
    const tried = candidates.map((c) => c.id).join(', ');
    throw new PatchFedError('backend-unavailable', `Backend '${choice}' is not available (tried ${tried}): ${notes.join('; ')}`, { subject: choice });
  }
  if (chosenIndex > 0) {
    const skipped = candidates.slice(0, chosenIndex).map((c) => c.id).join(', ');
    note(`${choice}: using ${candidates[chosenIndex]!.id} because ${skipped} ${chosenIndex > 1 ? 'are' : 'is'} unavailable`);
  }

  const tensorflowVersion = chosen.tensorflowVersion ?? null;
  recordActiveBackend({ name: chosen.backendName, gpu: chosen.gpu, tensorflowVersion });
  const check = await selfCheck(chosen.backendName);
  note(check.passed ? `gradient self-check passed: ${check.detail}` : `gradient self-check FAILED: ${check.detail}`);
  return {
    name: chosen.backendName,
    choice,
    package: chosen.packageName,
    version: chosen.version,
    gpu: chosen.gpu,
    tensorflowVersion,
    selfCheck: { passed: check.passed, maxRelError: check.maxRelError, detail: check.detail },
    notes,
  };
}

/** Training refuses a backend whose gradients failed the self-check. */
export function assertTrainableBackend(report: BackendReport): void {
  if (report.selfCheck.passed) return;
  throw new PatchFedError(
    'backend-gradients',
    `Backend '${report.name}' (${report.package}) cannot be used for training: ${report.selfCheck.detail}. ` +
      `Use --backend cpu, cpu-fast or tensorflow for training; '${report.name}' is fine for inference.`,
    { subject: report.name },
  );
}
