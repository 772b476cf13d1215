/**
 * Real learning, patch-wise U-Net (thesis §2.2.2; cpu-small preset, instance norm): on held-out
 * phantom cases the model trained through `patchfed train`'s code path reaches mean foreground
 * Dice ≥ 0.7 within a fixed step budget, where the same nets untrained score near 0.
 * Settings and why (see the issue note): Adam lr 1e-2 (the thesis's 3e-4 needs thousands of
 * steps), Dice + cross-entropy, every patch forced to contain foreground (classes drawn
 * uniformly, so the rare non-enhancing core is seen often), 16³ patches, batch 2.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { learningRun, TempDirs, useTrainingBackend } from './learning-fixtures.ts';

const STEPS = 300;
const temp = new TempDirs();
beforeAll(useTrainingBackend);
afterAll(() => temp.cleanup());

it(`patch-wise U-Net reaches mean foreground test Dice >= 0.7 on a brain phantom in ${STEPS} steps`, async () => {
  const r = await learningRun(
    await temp.make(),
    { mode: 'patch', preset: 'cpu-small', norm: 'instance' },
    { steps: STEPS, learningRate: 1e-2, foregroundRate: 1, patch: [16, 16, 16], batch: 2, validateEvery: 75, overlap: 0.5, blend: 'gaussian' },
  );
  console.log(`learning-patch: ${JSON.stringify(r)}`);
  expect(r.steps).toEqual([STEPS]);
  expect(r.untrainedMeanDice).toBeLessThan(0.3);
  expect(r.meanDice).toBeGreaterThanOrEqual(0.7);
  for (const d of Object.values(r.perClass)) expect(d).toBeGreaterThan(0.3);
}, 400_000);
