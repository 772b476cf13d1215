/**
 * Real learning on a tiny context phantom (16×16×64 brain, 12 cases): a full U-Net (base 8,
 * depth 3) trained for a fixed number of steps through compare's path (runLocalTraining, then
 * compare's own evaluation) learns the tumour classes and labels the oedema tract as oedema far
 * more often than its look-alike, which looks the same voxel for voxel: what tells them apart is
 * the tumour at the tract's end, i.e. context. An untrained net cannot meet these thresholds: it
 * labels both tubes alike and finds no tumour.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCompare } from '../site-agent/run/compare.ts';
import { useTrainingBackend } from './learning-fixtures.ts';

const STEPS = 120;
const out = mkdtempSync(join(tmpdir(), 'patchfed-context-learn-'));
let backend = 'cpu';
beforeAll(async () => {
  backend = await useTrainingBackend();
});
afterAll(() => rmSync(out, { recursive: true, force: true }));

it(`a full U-Net learns the context phantom's classes and tells the tract from its look-alike in ${STEPS} steps`, async () => {
  const r = await runCompare({
    task: 'brain',
    outDir: out,
    modes: ['full'],
    steps: STEPS,
    cases: 12,
    shape: [16, 16, 64],
    context: true,
    siteStyle: 0,
    slab: 16,
    base: 8,
    depth: 3,
    learningRate: 1e-2,
    seed: 1,
    backend,
    progress: null,
  });
  const full = r.modes[0]!;
  const ctx = full.evaluation.context!;
  console.log(`context-learning: ${JSON.stringify({ dice: full.dice, context: ctx, trainMs: full.stages[0]!.trainTimeMs })}`);
  expect(full.stages[0]!.steps).toBe(STEPS);
  expect(full.dice.edema).toBeGreaterThanOrEqual(0.5);
  expect(full.dice['enhancing tumour']).toBeGreaterThanOrEqual(0.5);
  expect(ctx.connectedRecall! - ctx.lookalikeFalsePositive!).toBeGreaterThanOrEqual(0.2);
}, 900_000);
