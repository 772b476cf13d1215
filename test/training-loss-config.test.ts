/**
 * `training.loss` reaches the trainer: soft Dice alone is bounded by 1, while Dice + cross-entropy
 * starts above 1 on an untrained net (CE of a near-uniform softmax over 4 classes is ~ln 4).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiteConfigSchema } from '../shared/config/site.ts';
import { TempDirs, brainPhantom, useTrainingBackend, writeSiteConfig } from './learning-fixtures.ts';

const dirs = new TempDirs();
let data = '';

beforeAll(async () => {
  await useTrainingBackend();
  data = await brainPhantom(await dirs.make());
});
afterAll(() => dirs.cleanup());

async function firstStepLoss(loss: 'dice' | 'dice-ce'): Promise<number> {
  const { runLocalTraining } = await import('../site-agent/run/local-training.ts');
  const root = await dirs.make();
  const configPath = await writeSiteConfig(root, {
    dataset: data,
    model: { mode: 'patch', preset: 'tiny', norm: 'instance' },
    training: { steps: 1, loss, patch: [16, 16, 16], batch: 1, foregroundRate: 1 },
  });
  const report = await runLocalTraining({ configPath, progress: null });
  const first = report.stages[0]!.finalLoss;
  expect(first).not.toBeNull();
  return first!;
}

describe('training.loss', () => {
  it('defaults to dice-ce and refuses unknown losses', () => {
    const base = { siteId: 's', dataset: 'd', memoryBudgetMB: 100 };
    expect(SiteConfigSchema.parse(base).training.loss).toBe('dice-ce');
    expect(SiteConfigSchema.safeParse({ ...base, training: { loss: 'focal' } }).success).toBe(false);
  });

  it('trains with plain soft Dice or with Dice + CE as configured', async () => {
    const dice = await firstStepLoss('dice');
    const diceCe = await firstStepLoss('dice-ce');
    expect(dice).toBeGreaterThan(0);
    expect(dice).toBeLessThanOrEqual(1);
    expect(diceCe).toBeGreaterThan(1);
  });
});
