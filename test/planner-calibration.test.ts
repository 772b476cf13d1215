/**
 * The memory planner against measurement: the first-principles estimate (site-agent/planner)
 * must be within ±25% of the measured training peak (tf.profile engine bytes + native conv
 * workspace) on ≥ 6 configurations covering full / patch / cascade stages, patch shapes, depths,
 * base, batch and both norms; and the planner's choice must train inside its budget.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../site-agent/backend/gradients/index.ts';
import { registerFastCpuBackend } from '../site-agent/kernels/index.ts';
import { calibrate, SMALL_CALIBRATION_SET, type CalibrationRow } from '../site-agent/planner/calibrate.ts';
import { estimateTrainingPeak } from '../site-agent/planner/estimate.ts';
import { measureTrainingPeak, syntheticBatch } from '../site-agent/planner/measure.ts';
import { planTraining } from '../site-agent/planner/plan.ts';
import { kernelWorkspaceBytes } from '../site-agent/planner/workspace.ts';
import { UNet3D } from '../site-agent/model/unet.ts';
import { trainStage } from '../site-agent/train/trainer.ts';
import type { StageData } from '../site-agent/train/stage-data.ts';

const TOLERANCE = 0.25;
let fastBackend: string;

beforeAll(async () => {
  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);
  const fast = await registerFastCpuBackend();
  fastBackend = fast?.backendName ?? 'cpu';
  await tf.setBackend(fastBackend);
});

afterAll(async () => {
  await tf.setBackend(fastBackend);
});

describe('estimate vs measured training peak', () => {
  let rows: CalibrationRow[] = [];

  it(`is within ±${TOLERANCE * 100}% on ${SMALL_CALIBRATION_SET.length} configurations (fast cpu backend)`, async () => {
    const before = tf.memory().numTensors;
    rows = await calibrate(SMALL_CALIBRATION_SET);
    expect(rows.filter((r) => (r.config.pass ?? 'training') === 'training').length).toBeGreaterThanOrEqual(6);
    for (const r of rows) {
      expect(r.measuredBytes, r.config.label).toBeGreaterThan(0);
      expect(Math.abs(r.ratio - 1), `${r.config.label}: est ${r.estimatedBytes} vs measured ${r.measuredBytes}`).toBeLessThanOrEqual(TOLERANCE);
      // The engine part alone as well (the workspace must not paper over an activation error).
      const engineRatio = r.estimatedEngineBytes / r.measured.engineBytes;
      expect(Math.abs(engineRatio - 1), `${r.config.label}: engine`).toBeLessThanOrEqual(TOLERANCE);
    }
    // Measurement leaves nothing behind.
    expect(tf.memory().numTensors).toBe(before);
  });

  it('predicts the native convolution workspace (cpu-fast) to within 5%', () => {
    const fast = rows.filter((r) => r.backend === 'cpu-fast');
    if (fast.length === 0) return; // addon not built: nothing to compare
    for (const r of fast) {
      const est = r.estimatedBytes - r.estimatedEngineBytes;
      expect(r.measured.workspaceBytes, r.config.label).toBeGreaterThan(0);
      expect(Math.abs(est / r.measured.workspaceBytes - 1), r.config.label).toBeLessThanOrEqual(0.05);
    }
  });

  it('is within ±25% on the stock cpu backend too (tiny configurations)', async () => {
    await tf.setBackend('cpu');
    // The stock backend greets Node users with "install tfjs-node"; not useful in test output.
    (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
    try {
      const tiny = SMALL_CALIBRATION_SET.filter((c) => c.label.startsWith('full') || c.label.startsWith('cascade stage 1'));
      expect(tiny.length).toBe(2);
      for (const r of await calibrate(tiny)) {
        expect(r.backend).toBe('cpu');
        expect(r.measured.workspaceBytes).toBe(0);
        expect(Math.abs(r.ratio - 1), r.config.label).toBeLessThanOrEqual(TOLERANCE);
      }
    } finally {
      await tf.setBackend(fastBackend);
    }
  });
});

describe('planner choices stay within the budget', () => {
  const net = { inChannels: 2, classes: 3, arch: { base: 8, depth: 3, norm: 'instance' as const } };
  const budgetBytes = 100 * 2 ** 20;

  it('picks the largest patch that fits, and training it measures under the budget', async () => {
    const plan = planTraining({ shape: [64, 64, 48], channels: 2, classes: 3, mode: 'patch', arch: net.arch, budgetBytes, workspaceBytes: kernelWorkspaceBytes() });
    expect(plan.fits).toBe(true);
    const stage = plan.stages[0]!;
    const chosen = stage.chosen!;
    // The whole volume does not fit, so the planner really had to shrink.
    expect(stage.candidates[0]!.fits).toBe(false);
    expect(chosen.estimate.total * (1 + plan.safetyMargin)).toBeLessThanOrEqual(budgetBytes);

    const measured = await measureTrainingPeak({ ...net, patch: chosen.patch, batch: chosen.batch, steps: 2 });
    expect(measured.engineBytes + measured.workspaceBytes).toBeLessThanOrEqual(budgetBytes);
    // …and not wastefully far below it: the estimate it was chosen by is within 25% of the measurement.
    const est = estimateTrainingPeak(net, chosen.patch, chosen.batch, { workspaceBytes: kernelWorkspaceBytes() });
    const workspace = measured.backend === 'cpu-fast' ? est.workspace : 0;
    expect(Math.abs((est.engine + workspace) / (measured.engineBytes + measured.workspaceBytes) - 1)).toBeLessThanOrEqual(TOLERANCE);
  });

  it('the trainer stops with E_BUDGET when a measured step exceeds the budget', async () => {
    const req = { ...net, patch: [16, 16, 16] as [number, number, number], batch: 1 };
    const need = estimateTrainingPeak(req, req.patch, 1).engine;
    const model = new UNet3D({ inChannels: 2, numClasses: 3, base: 8, depth: 3, norm: 'instance', seed: 3 });
    const batch = syntheticBatch(req);
    try {
      await expect(
        trainStage({
          net: model,
          data: { nextBatch: async () => batch } as unknown as StageData,
          steps: 2,
          learningRate: 3e-4,
          includeBackground: true,
          budgetBytes: Math.round(need / 2),
        }),
      ).rejects.toMatchObject({ code: 'E_BUDGET' });
    } finally {
      model.dispose();
    }
  });
});
