/**
 * The resumable side of `patchfed train`: where the state lives (<out>/resume-state.pfts), when
 * it is written (every N steps, after each stage, on SIGINT/SIGTERM — train-site.ts and the
 * trainer decide), that a resume runs with the settings it was saved with, and that a finished
 * run removes it.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import type { StageTrainingReport } from './train-site.ts';
import { readTrainingState, settingsDifference, writeTrainingState, type SavedTrainingState, type SiteTrainingState, type TrainingSettings } from './training-state.ts';

export const TRAINING_STATE_FILE = 'resume-state.pfts';
/** Steps between saved states when the command line does not say: a few seconds to minutes of work. */
export const DEFAULT_CHECKPOINT_EVERY = 50;

/** Training stopped on request (SIGINT/SIGTERM) after saving a resumable state. */
export class TrainingInterruptedError extends PatchFedError {
  constructor(
    readonly statePath: string,
    where: string,
  ) {
    super('E_INTERRUPTED', `training interrupted ${where}; saved a resumable state to ${statePath} — continue with the same command and --resume`, { subject: statePath });
  }
}

/** The saved state of the run in `outDir` (with --resume), read before any slow setup so a missing one fails fast. */
export function loadSavedTraining(outDir: string, resume: boolean): SavedTrainingState | null {
  return resume ? readTrainingState(join(outDir, TRAINING_STATE_FILE)) : null;
}

export interface ResumableRunRequest {
  outDir: string;
  /** loadSavedTraining's answer: the run to continue, or null to start (over). */
  saved: SavedTrainingState | null;
  /** --steps, when given; else the saved run's, else the config's. */
  requestedSteps?: number;
  configSteps: number;
  checkpointEvery?: number;
  /** Everything that must match between the saved run and this one, except the step count. */
  settings: TrainingSettings;
  /** Saved for information: another backend resumes, but not bit for bit. */
  backend: string;
  notice: (message: string) => void;
}

export interface ResumableRun {
  statePath: string;
  steps: number;
  checkpointEvery: number;
  /** The state to continue from, with --resume. */
  resume?: SiteTrainingState;
  save(state: SiteTrainingState): void;
  /** Throws TrainingInterruptedError when a stage stopped early (the state is saved by then). */
  assertComplete(reports: readonly StageTrainingReport[], stages: number): void;
  /** The run finished and its model is written: the state is no longer needed. */
  finished(): void;
}

export function openResumableRun(req: ResumableRunRequest): ResumableRun {
  const statePath = join(req.outDir, TRAINING_STATE_FILE);
  const saved = req.saved;
  if (!saved && existsSync(statePath)) {
    req.notice(`${statePath} holds an interrupted run's state; starting over and replacing it (use --resume to continue that run instead)`);
  }
  const savedSteps = saved?.settings.stepsPerStage;
  const steps = req.requestedSteps ?? (typeof savedSteps === 'number' ? savedSteps : req.configSteps);
  const settings: TrainingSettings = { ...req.settings, stepsPerStage: steps, backend: req.backend };
  if (saved) {
    const { backend: savedBackend, ...savedStrict } = saved.settings;
    const { backend: _now, ...nowStrict } = settings;
    const diff = settingsDifference(savedStrict, nowStrict);
    if (diff) throw new PatchFedError('E_RESUME_MISMATCH', `cannot resume from ${statePath}: ${diff}; resume with the same config and options, or start over without --resume`, { subject: statePath });
    if (savedBackend !== req.backend) req.notice(`the saved run trained on ${String(savedBackend)}, this one on ${req.backend}: it continues, but not bit for bit`);
    const c = saved.site.current;
    const where = c ? `${c.setup.stage} at step ${c.trainer?.step ?? 0}/${steps}` : 'the evaluation';
    req.notice(`resuming from ${statePath} (saved ${saved.savedAt}): ${saved.site.completed.length} stage(s) done, continuing with ${where}`);
  }
  mkdirSync(req.outDir, { recursive: true });
  return {
    statePath,
    steps,
    checkpointEvery: req.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY,
    resume: saved?.site,
    save: (site) => writeTrainingState(statePath, { settings, site, savedAt: new Date().toISOString() }),
    assertComplete(reports, stages) {
      const stopped = reports.find((r) => r.result.aborted);
      if (!stopped && reports.length === stages) return;
      const where = stopped ? `at step ${stopped.result.stepsDone}/${steps} of ${stopped.stage}` : 'between stages';
      throw new TrainingInterruptedError(statePath, where);
    },
    finished: () => rmSync(statePath, { force: true }),
  };
}
