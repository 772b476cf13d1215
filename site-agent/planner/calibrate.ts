/**
 * Estimate vs measurement, side by side: for each configuration, the estimated training peak
 * (engine tensors + native conv workspace) against the measured one on the active backend.
 * Used by test/planner-calibration.test.ts (small sizes) and `patchfed plan --calibrate` (larger).
 */
import type { Architecture } from '../../shared/config/model.ts';
import { estimateInferencePeak, estimateTrainingPeak } from './estimate.ts';
import { measureInferencePeak, measureTrainingPeak, type MeasuredPeak } from './measure.ts';
import { kernelWorkspaceBytes } from './workspace.ts';

export interface CalibrationConfig {
  /** What the configuration stands for (mode / stage). */
  label: string;
  inChannels: number;
  classes: number;
  arch: Architecture;
  patch: [number, number, number];
  batch: number;
  pass?: 'training' | 'inference';
}

export interface CalibrationRow {
  config: CalibrationConfig;
  backend: string;
  /** Estimated engine bytes + workspace (the runtime overhead is excluded: tf.profile cannot see it). */
  estimatedBytes: number;
  /** Measured engine peak + native workspace. */
  measuredBytes: number;
  estimatedEngineBytes: number;
  measured: MeasuredPeak;
  /** estimated / measured */
  ratio: number;
  /**
   * What the profiled steps add on top of the weights, estimated (engine − weights + workspace),
   * to compare with measured.rssDeltaBytes: the check that holds on backends whose memory tfjs
   * does not see (the 'tensorflow' backend's C++ tensors and kernel scratch).
   */
  estimatedStepBytes: number;
}

/**
 * Small configurations covering the three modes' stages, patch shapes, depths, base, batch and
 * both norms; small enough for a test (each step well under a second on cpu-fast).
 */
export const SMALL_CALIBRATION_SET: CalibrationConfig[] = [
  { label: 'full (whole 16³ volume), tiny', inChannels: 1, classes: 2, arch: { base: 4, depth: 2, norm: 'instance' }, patch: [16, 16, 16], batch: 1 },
  { label: 'patch 16³, cpu-small', inChannels: 2, classes: 3, arch: { base: 8, depth: 3, norm: 'instance' }, patch: [16, 16, 16], batch: 1 },
  { label: 'patch 16³ batch 2, batch norm', inChannels: 2, classes: 3, arch: { base: 8, depth: 3, norm: 'batch' }, patch: [16, 16, 16], batch: 2 },
  { label: 'patch 32×32×16 (slab), 4 ch', inChannels: 4, classes: 4, arch: { base: 8, depth: 3, norm: 'instance' }, patch: [32, 32, 16], batch: 1 },
  { label: 'cascade stage 1 (16×16×8 low-res)', inChannels: 4, classes: 4, arch: { base: 8, depth: 3, norm: 'instance' }, patch: [16, 16, 8], batch: 1 },
  { label: 'cascade stage 2 (4+3 ch, 16³)', inChannels: 7, classes: 4, arch: { base: 8, depth: 3, norm: 'instance' }, patch: [16, 16, 16], batch: 1 },
  { label: 'depth 4, base 16, 32³', inChannels: 1, classes: 3, arch: { base: 16, depth: 4, norm: 'instance' }, patch: [32, 32, 32], batch: 1 },
  { label: 'weights dominate: base 32 depth 4, 16³', inChannels: 1, classes: 2, arch: { base: 32, depth: 4, norm: 'batch' }, patch: [16, 16, 16], batch: 1 },
  { label: 'inference, cpu-small 32³', inChannels: 2, classes: 3, arch: { base: 8, depth: 3, norm: 'instance' }, patch: [32, 32, 32], batch: 1, pass: 'inference' },
];

/** Larger configurations for `patchfed plan --calibrate` (tens to hundreds of MB each). */
export const LARGE_CALIBRATION_SET: CalibrationConfig[] = [
  { label: 'full 64³ volume, cpu-small', inChannels: 4, classes: 4, arch: { base: 8, depth: 3, norm: 'instance' }, patch: [64, 64, 64], batch: 1 },
  { label: 'patch 64×64×16 slab, cpu-medium', inChannels: 4, classes: 4, arch: { base: 16, depth: 4, norm: 'instance' }, patch: [64, 64, 16], batch: 1 },
  { label: 'patch 48³ batch 2, batch norm', inChannels: 1, classes: 3, arch: { base: 8, depth: 3, norm: 'batch' }, patch: [48, 48, 48], batch: 2 },
  { label: 'cascade stage 2 (4+3 ch) 64×64×32', inChannels: 7, classes: 4, arch: { base: 8, depth: 3, norm: 'instance' }, patch: [64, 64, 32], batch: 1 },
  { label: 'depth 5 (thesis shape), base 8, 64³', inChannels: 4, classes: 4, arch: { base: 8, depth: 5, norm: 'batch' }, patch: [64, 64, 64], batch: 1 },
  { label: 'thesis U-Net (base 32, depth 5), 32³', inChannels: 4, classes: 4, arch: { base: 32, depth: 5, norm: 'batch' }, patch: [32, 32, 32], batch: 1 },
];

export async function calibrate(configs: readonly CalibrationConfig[], onRow?: (row: CalibrationRow) => void): Promise<CalibrationRow[]> {
  const limit = kernelWorkspaceBytes();
  const rows: CalibrationRow[] = [];
  for (const config of configs) {
    const training = (config.pass ?? 'training') === 'training';
    const est = (training ? estimateTrainingPeak : estimateInferencePeak)(config, config.patch, config.batch, { workspaceBytes: limit });
    const measured = await (training ? measureTrainingPeak : measureInferencePeak)({ ...config });
    // The stock cpu backend has no workspace even when the addon is built.
    const workspace = measured.backend === 'cpu-fast' ? est.workspace : 0;
    const estimatedBytes = est.engine + workspace;
    const measuredBytes = measured.engineBytes + measured.workspaceBytes;
    const estimatedStepBytes = est.engine - est.weights + workspace;
    const row: CalibrationRow = { config, backend: measured.backend, estimatedBytes, measuredBytes, estimatedEngineBytes: est.engine, measured, ratio: estimatedBytes / measuredBytes, estimatedStepBytes };
    rows.push(row);
    onRow?.(row);
  }
  return rows;
}

export function formatCalibrationRow(r: CalibrationRow): string {
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(2)} MB`;
  const c = r.config;
  const rss = r.measured.rssDeltaBytes === null ? '' : `  RSS Δ ${mb(r.measured.rssDeltaBytes)} vs est. step ${mb(r.estimatedStepBytes)}`;
  return `${c.label.padEnd(40)} ${c.patch.join('x').padEnd(9)} b${c.batch} base ${String(c.arch.base).padEnd(2)} d${c.arch.depth} ${c.arch.norm.padEnd(8)} ${r.backend.padEnd(8)} est ${mb(r.estimatedBytes).padStart(11)}  measured ${mb(r.measuredBytes).padStart(11)} (ws ${mb(r.measured.workspaceBytes)})  ratio ${r.ratio.toFixed(2)}${rss}`;
}
