/**
 * Real learning, patch-wise U-Net cascade (thesis §2.2.3; cpu-small preset, factor 0.5): stage 1
 * (whole downsampled volume) and stage 2 (16³ patches of image + stage-1 guidance) trained
 * independently through `patchfed train`'s code path; the cascade's test segmentation (stage 2
 * guided by stage 1's prediction) reaches mean foreground Dice ≥ 0.7 within a fixed step budget.
 * Same settings as learning-patch.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { learningRun, TempDirs, useTrainingBackend } from './learning-fixtures.ts';

const STEPS = 300;
const temp = new TempDirs();
beforeAll(useTrainingBackend);
afterAll(() => temp.cleanup());

it(`cascade reaches mean foreground test Dice >= 0.7 on a brain phantom in ${STEPS} steps per stage`, async () => {
  const r = await learningRun(
    await temp.make(),
    { mode: 'cascade', preset: 'cpu-small', norm: 'instance', cascadeFactor: 0.5 },
    { steps: STEPS, learningRate: 1e-2, foregroundRate: 1, patch: [16, 16, 16], batch: 2, validateEvery: 75, overlap: 0.5, blend: 'gaussian' },
  );
  console.log(`learning-cascade: ${JSON.stringify(r)}`);
  expect(r.steps).toEqual([STEPS, STEPS]);
  expect(r.untrainedMeanDice).toBeLessThan(0.3);
  expect(r.meanDice).toBeGreaterThanOrEqual(0.7);
  for (const d of Object.values(r.perClass)) expect(d).toBeGreaterThan(0.3);
}, 600_000);
