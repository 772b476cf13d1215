/**
 * From a dataset and a declared budget to the stages a site trains: the planner's choice (or the
 * config's explicit override, checked against the budget the same way).
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { Architecture, Mode } from '../../shared/config/model.ts';
import type { Shape3 } from '../pipeline/case.ts';
import { estimateTrainingPeak, requiredDivisor, roundUpTo } from '../planner/estimate.ts';
import { formatBytes, planTraining, shrinkingPatches, type Plan } from '../planner/plan.ts';
import { kernelWorkspaceBytes } from '../planner/workspace.ts';
import { isPatchWiseStage, type Stage } from '../../shared/model/index.ts';

export interface StageSetup {
  stage: Stage;
  inChannels: number;
  /** Training patch (whole padded volume for whole-volume stages). */
  patch: Shape3;
  batch: number;
  estimatedPeakBytes: number;
}

export interface SitePlanRequest {
  largestShape: [number, number, number];
  channels: number;
  classes: number;
  mode: Mode;
  arch: Architecture;
  budgetMB: number;
  cascadeFactor: number;
  /** Explicit patch/batch (config `training.patch` / `training.batch`): used as given if it fits. */
  patch?: [number, number, number];
  batch?: number;
  safetyMargin?: number;
}

export interface SitePlan {
  plan: Plan;
  stages: StageSetup[];
  divisor: number;
}

export function planSite(req: SitePlanRequest): SitePlan {
  const plan = planTraining({
    shape: req.largestShape,
    channels: req.channels,
    classes: req.classes,
    mode: req.mode,
    arch: req.arch,
    budgetBytes: req.budgetMB * 1024 * 1024,
    cascadeFactor: req.cascadeFactor,
    safetyMargin: req.safetyMargin,
    workspaceBytes: kernelWorkspaceBytes(),
  });
  const divisor = requiredDivisor(req.arch);
  const stages: StageSetup[] = [];
  for (const s of plan.stages) {
    const patchWise = isPatchWiseStage(s.stage);
    let patch: Shape3;
    let batch: number;
    if (patchWise && req.patch) {
      patch = req.patch.map((d) => roundUpTo(d, divisor)) as unknown as Shape3;
      batch = req.batch ?? 1;
      const need = estimateTrainingPeak({ inChannels: s.inChannels, classes: req.classes, arch: req.arch }, patch, batch, { workspaceBytes: kernelWorkspaceBytes() }).total;
      if (need * (1 + plan.safetyMargin) > plan.budgetBytes) {
        throw new PatchFedError(
          'E_BUDGET',
          `the configured patch ${patch.join('x')} (batch ${batch}) needs ~${formatBytes(need)} (+${Math.round(plan.safetyMargin * 100)}% margin), more than the budget of ${formatBytes(plan.budgetBytes)}; remove training.patch to let the planner choose`,
        );
      }
      stages.push({ stage: s.stage, inChannels: s.inChannels, patch, batch, estimatedPeakBytes: need });
      continue;
    }
    if (!s.chosen) throw new PatchFedError('E_BUDGET', plan.message);
    const batch2 = !patchWise && req.batch ? Math.min(req.batch, s.chosen.batch) : s.chosen.batch;
    stages.push({ stage: s.stage, inChannels: s.inChannels, patch: s.chosen.patch, batch: batch2, estimatedPeakBytes: s.chosen.estimate.total });
  }
  return { plan, stages, divisor };
}

export interface Replan {
  setup: StageSetup;
  /** measured engine bytes / estimated engine bytes of the configuration that failed. */
  correction: number;
  /** Engine bytes the new configuration is expected to measure (estimate × correction). */
  expectedEngineBytes: number;
}

/**
 * After a measured step exceeded the budget (trainer's E_BUDGET): the largest configuration
 * strictly smaller than `failed` (fewer voxels per batch) whose engine estimate, corrected by
 * the measured/estimated ratio of the failed one and with the safety margin, fits `budgetBytes`.
 * Patch-wise stages may shrink the patch and the batch; whole-volume stages only the batch.
 * Returns null when nothing smaller fits (the caller reports that plainly).
 */
export function replanStage(
  req: Pick<SitePlanRequest, 'largestShape' | 'classes' | 'arch' | 'safetyMargin'>,
  failed: StageSetup,
  measuredEngineBytes: number,
  budgetBytes: number,
): Replan | null {
  const net = { inChannels: failed.inChannels, classes: req.classes, arch: req.arch };
  const engine = (patch: readonly number[], batch: number) => estimateTrainingPeak(net, patch, batch, { workspaceBytes: kernelWorkspaceBytes() }).engine;
  const correction = Math.max(1, measuredEngineBytes / engine(failed.patch, failed.batch));
  const margin = req.safetyMargin ?? 0.15;
  const divisor = requiredDivisor(req.arch);
  const patchWise = isPatchWiseStage(failed.stage);
  const patches: Shape3[] = patchWise ? shrinkingPatches(req.largestShape, divisor, Math.max(8, 2 * divisor)) : [failed.patch];
  const size = (patch: Shape3, batch: number) => patch[0] * patch[1] * patch[2] * batch;
  const candidates = patches
    .flatMap((patch) => Array.from({ length: failed.batch }, (_, b) => ({ patch, batch: b + 1 })))
    .filter((c) => size(c.patch, c.batch) < size(failed.patch, failed.batch))
    .sort((a, b) => size(b.patch, b.batch) - size(a.patch, a.batch) || b.batch - a.batch);
  for (const c of candidates) {
    const expected = engine(c.patch, c.batch) * correction;
    if (expected * (1 + margin) <= budgetBytes) {
      const total = estimateTrainingPeak(net, c.patch, c.batch, { workspaceBytes: kernelWorkspaceBytes() }).total;
      return { setup: { ...failed, patch: [...c.patch] as unknown as Shape3, batch: c.batch, estimatedPeakBytes: total }, correction, expectedEngineBytes: expected };
    }
  }
  return null;
}
