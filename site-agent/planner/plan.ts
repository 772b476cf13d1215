/**
 * The memory planner: for a site's declared budget, choose the largest patch (then batch) whose
 * estimated training peak, plus a safety margin, fits. nnU-Net-like search: start from the whole
 * (padded) volume and shrink the longest axis one divisor step at a time.
 */
import type { Architecture, Mode } from '../../shared/config/model.ts';
import { isWholeVolumeStage, stagesForMode, type Stage } from '../../shared/model/index.ts';
import {
  estimateInferencePeak,
  estimateTrainingPeak,
  requiredDivisor,
  roundUpTo,
  type MemoryBreakdown,
  type UNetShape,
} from './estimate.ts';

export interface PlanRequest {
  /** Spatial shape of the largest case. */
  shape: [number, number, number];
  channels: number;
  /** Classes including background. */
  classes: number;
  mode: Mode;
  arch: Architecture;
  budgetBytes: number;
  /** Fraction added to every estimate before comparing with the budget. */
  safetyMargin?: number;
  cascadeFactor?: number;
  maxBatch?: number;
  /** Limit of the native conv workspace (kernelWorkspaceBytes()); 0 or absent without native kernels. */
  workspaceBytes?: number;
  /** Smallest patch edge considered (default: 2 × the U-Net divisor, at least 8). */
  minPatchEdge?: number;
}

export interface PlanCandidate {
  patch: [number, number, number];
  batch: number;
  estimate: MemoryBreakdown;
  /** estimate.total × (1 + margin) ≤ budget */
  fits: boolean;
}

export interface StagePlan {
  stage: Stage;
  inChannels: number;
  /** Shape the stage sees (downsampled for cascade stage 1). */
  volumeShape: [number, number, number];
  chosen: PlanCandidate | null;
  /** The shrinking sequence that was evaluated (largest first). */
  candidates: PlanCandidate[];
}

export interface Plan {
  mode: Mode;
  budgetBytes: number;
  safetyMargin: number;
  fits: boolean;
  stages: StagePlan[];
  /** Peak of the chosen configuration (max over stages: cascade stages train independently). */
  peakBytes: number | null;
  /** What `full` mode would need to train on the whole volume, batch 1. */
  fullVolumeBytes: number;
  /** What the full U-Net needs for inference alone on the whole volume (the thesis's Table 4.2 measures inference). */
  fullVolumeInferenceBytes: number;
  message: string;
}

const MB = 1024 * 1024;

export function formatBytes(n: number): string {
  if (n >= 1024 ** 4) return `${(n / 1024 ** 4).toFixed(2)} TB`;
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GB`;
  return `${(n / MB).toFixed(1)} MB`;
}

/** Successively smaller patches: shrink the longest axis by one divisor step (≈10% for big axes). */
export function shrinkingPatches(volume: readonly number[], divisor: number, minEdge: number): [number, number, number][] {
  const lo = roundUpTo(Math.max(minEdge, divisor), divisor);
  let p = volume.map((d) => Math.max(lo, roundUpTo(d, divisor))) as [number, number, number];
  const out: [number, number, number][] = [[...p]];
  for (;;) {
    let axis: -1 | 0 | 1 | 2 = -1;
    for (const a of [0, 1, 2] as const) if (p[a] > lo && (axis === -1 || p[a] > p[axis])) axis = a;
    if (axis === -1) break;
    const step = Math.max(divisor, Math.floor(p[axis] / 10 / divisor) * divisor);
    p = [...p] as [number, number, number];
    p[axis] = Math.max(lo, p[axis] - step);
    out.push([...p]);
  }
  return out;
}

function candidate(net: UNetShape, patch: [number, number, number], batch: number, req: PlanRequest, margin: number): PlanCandidate {
  const estimate = estimateTrainingPeak(net, patch, batch, { workspaceBytes: req.workspaceBytes });
  return { patch, batch, estimate, fits: estimate.total * (1 + margin) <= req.budgetBytes };
}

/** Largest fitting patch from the sequence, then the largest batch ≤ maxBatch at that patch. */
function planPatchStage(
  stage: StagePlan['stage'],
  net: UNetShape,
  volumeShape: [number, number, number],
  req: PlanRequest,
  margin: number,
  wholeVolumeOnly: boolean,
): StagePlan {
  const divisor = requiredDivisor(net.arch);
  const minEdge = req.minPatchEdge ?? Math.max(8, 2 * divisor);
  const shapes = wholeVolumeOnly
    ? [volumeShape.map((d) => roundUpTo(d, divisor)) as [number, number, number]]
    : shrinkingPatches(volumeShape, divisor, minEdge);
  const candidates: PlanCandidate[] = [];
  let chosen: PlanCandidate | null = null;
  for (const patch of shapes) {
    const c = candidate(net, patch, 1, req, margin);
    candidates.push(c);
    if (c.fits) {
      chosen = c;
      break;
    }
  }
  if (chosen) {
    for (let b = 2; b <= (req.maxBatch ?? 4); b++) {
      const c = candidate(net, chosen.patch, b, req, margin);
      candidates.push(c);
      if (!c.fits) break;
      chosen = c;
    }
  }
  return { stage, inChannels: net.inChannels, volumeShape, chosen, candidates };
}

export function downsampledShape(shape: readonly number[], factor: number, divisor: number): [number, number, number] {
  return shape.map((d) => roundUpTo(Math.max(1, Math.round(d * factor)), divisor)) as [number, number, number];
}

export function planTraining(req: PlanRequest): Plan {
  const margin = req.safetyMargin ?? 0.15;
  const net: UNetShape = { inChannels: req.channels, classes: req.classes, arch: req.arch };
  const divisor = requiredDivisor(req.arch);
  const wholeVolume = req.shape.map((d) => roundUpTo(d, divisor));
  const fullVolumeBytes = estimateTrainingPeak(net, wholeVolume, 1, { workspaceBytes: req.workspaceBytes }).total;
  const fullVolumeInferenceBytes = estimateInferencePeak(net, wholeVolume, 1, { workspaceBytes: req.workspaceBytes }).total;
  const fullNote = ` Full 3D U-Net on the whole volume would need ~${formatBytes(fullVolumeBytes)} to train (~${formatBytes(fullVolumeInferenceBytes)} for inference alone).`;

  const stages = stagesForMode(req.mode, req.channels, req.classes).map(({ stage, inChannels }) => {
    // Cascade stage 1 sees the volume downsampled by cascadeFactor; every other stage the volume itself.
    const volume = stage === 'cascade-stage1' ? downsampledShape(req.shape, req.cascadeFactor ?? 0.5, divisor) : req.shape;
    return planPatchStage(stage, { ...net, inChannels }, volume, req, margin, isWholeVolumeStage(stage));
  });
  const fits = stages.every((s) => s.chosen !== null);
  const peakBytes = fits ? Math.max(...stages.map((s) => s.chosen!.estimate.total)) : null;
  let message: string;
  if (fits) {
    const parts = stages.map((s) => `${s.stage}: patch ${s.chosen!.patch.join('×')}, batch ${s.chosen!.batch}, ~${formatBytes(s.chosen!.estimate.total)}`);
    message = `fits in ${formatBytes(req.budgetBytes)} (margin ${Math.round(margin * 100)}%): ${parts.join('; ')}.${fullNote}`;
  } else {
    const failed = stages.filter((s) => !s.chosen);
    const smallest = failed.map((s) => {
      const last = s.candidates[s.candidates.length - 1]!;
      return `${s.stage} needs at least ~${formatBytes(last.estimate.total * (1 + margin))} (patch ${last.patch.join('×')}, batch 1)`;
    });
    message =
      `nothing fits in ${formatBytes(req.budgetBytes)}: ${smallest.join('; ')}. ` +
      (req.mode === 'full'
        ? 'Use mode patch or cascade, or a smaller model.'
        : 'Raise memoryBudgetMB, or use a smaller model preset (base/depth).') +
      fullNote;
  }
  return { mode: req.mode, budgetBytes: req.budgetBytes, safetyMargin: margin, fits, stages, peakBytes, fullVolumeBytes, fullVolumeInferenceBytes, message };
}
