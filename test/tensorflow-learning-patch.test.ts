/**
 * Real learning on the 'tensorflow' backend, patch-wise U-Net: trained through `patchfed train`'s
 * code path (runLocalTraining, backend 'tensorflow') with the data, settings and step budget of
 * learning-patch.test.ts on cpu-fast, it reaches the same bar — mean foreground test Dice ≥ 0.7
 * on held-out phantom cases, every class > 0.3, the untrained nets < 0.3. Skips (locally) or
 * fails (CI=1) without the backend. (Patch and cascade are two files so they run in parallel.)
 */
import { afterAll, expect, it } from 'vitest';
import { learningRun, TempDirs } from './learning-fixtures.ts';
import { requireTensorflow, useTensorflowBackend } from './tensorflow-fixtures.ts';

const STEPS = 300;
const temp = new TempDirs();
afterAll(() => temp.cleanup());

it(`patch-wise U-Net on tensorflow reaches mean foreground test Dice >= 0.7 in ${STEPS} steps`, async (ctx) => {
  requireTensorflow(ctx);
  await useTensorflowBackend();
  const r = await learningRun(
    await temp.make(),
    { mode: 'patch', preset: 'cpu-small', norm: 'instance' },
    { steps: STEPS, learningRate: 1e-2, foregroundRate: 1, patch: [16, 16, 16], batch: 2, validateEvery: 75, overlap: 0.5, blend: 'gaussian' },
  );
  console.log(`tensorflow-learning patch: ${JSON.stringify(r)}`);
  expect(r.steps).toEqual([STEPS]);
  expect(r.untrainedMeanDice).toBeLessThan(0.3);
  expect(r.meanDice).toBeGreaterThanOrEqual(0.7);
  for (const d of Object.values(r.perClass)) expect(d).toBeGreaterThan(0.3);
}, 600_000);
