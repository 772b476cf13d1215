/**
 * Real learning on the 'tensorflow' backend, patch-wise U-Net cascade (factor 0.5): both stages
 * trained through `patchfed train`'s code path (runLocalTraining, backend 'tensorflow') with the
 * data, settings and step budgets of learning-cascade.test.ts on cpu-fast; the cascade's test
 * segmentation reaches the same bar — mean foreground Dice ≥ 0.7, every class > 0.3, the
 * untrained nets < 0.3. Skips (locally) or fails (CI=1) without the backend.
 */
import { afterAll, expect, it } from 'vitest';
import { learningRun, TempDirs } from './learning-fixtures.ts';
import { requireTensorflow, useTensorflowBackend } from './tensorflow-fixtures.ts';

const STEPS = 300;
const temp = new TempDirs();
afterAll(() => temp.cleanup());

it(`cascade on tensorflow reaches mean foreground test Dice >= 0.7 in ${STEPS} steps per stage`, async (ctx) => {
  requireTensorflow(ctx);
  await useTensorflowBackend();
  const r = await learningRun(
    await temp.make(),
    { mode: 'cascade', preset: 'cpu-small', norm: 'instance', cascadeFactor: 0.5 },
    { steps: STEPS, learningRate: 1e-2, foregroundRate: 1, patch: [16, 16, 16], batch: 2, validateEvery: 75, overlap: 0.5, blend: 'gaussian' },
  );
  console.log(`tensorflow-learning cascade: ${JSON.stringify(r)}`);
  expect(r.steps).toEqual([STEPS, STEPS]);
  expect(r.untrainedMeanDice).toBeLessThan(0.3);
  expect(r.meanDice).toBeGreaterThanOrEqual(0.7);
  for (const d of Object.values(r.perClass)) expect(d).toBeGreaterThan(0.3);
}, 900_000);
