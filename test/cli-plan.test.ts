/**
 * `patchfed plan` from the command line: the documented --json keys, exit 3 with a plain
 * "nothing fits" message, the thesis's orders of magnitude for the real MSD geometries, and
 * clear errors for bad input.
 */
import { describe, expect, it } from 'vitest';
import { runPatchfed } from './cli-fixtures.ts';

const GB = 1024 ** 3;

const plan = (args: string[]) => runPatchfed(['plan', ...args]);

const JSON_KEYS = ['source', 'mode', 'model', 'budgetBytes', 'safetyMargin', 'fits', 'patch', 'batch', 'peakBytes', 'fullVolumeBytes', 'fullVolumeInferenceBytes', 'stages', 'message'];

describe('patchfed plan', () => {
  it('--json has the documented keys, and the chosen patch fits the budget with the margin', async () => {
    const r = await plan(['--shape', '96,96,64', '--channels', '4', '--classes', '4', '--budget-mb', '400', '--mode', 'patch', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    for (const k of JSON_KEYS) expect(j, k).toHaveProperty(k);
    expect(j.fits).toBe(true);
    expect(j.patch).toHaveLength(3);
    expect(j.batch).toBeGreaterThanOrEqual(1);
    expect(j.peakBytes * (1 + j.safetyMargin)).toBeLessThanOrEqual(j.budgetBytes);
    // The whole volume does not fit 400 MB, so the patch is smaller than the volume.
    expect(j.patch[0] * j.patch[1] * j.patch[2]).toBeLessThan(96 * 96 * 64);
    expect(j.fullVolumeBytes).toBeGreaterThan(j.budgetBytes);
    const stage = j.stages[0];
    expect(stage.stage).toBe('patch');
    expect(stage.chosen.patch).toEqual(j.patch);
    for (const k of ['weights', 'gradients', 'optimizer', 'activations', 'io', 'engine', 'workspace', 'overhead', 'total']) expect(stage.breakdown, k).toHaveProperty(k);
    expect(stage.candidates.length).toBeGreaterThan(1);
  });

  it('exits 3 and says plainly when nothing fits, and what full would need', async () => {
    const [r, text] = await Promise.all([
      plan(['--shape', '64,64,64', '--channels', '1', '--classes', '2', '--budget-mb', '10', '--json']),
      plan(['--shape', '64,64,64', '--channels', '1', '--classes', '2', '--budget-mb', '10', '--mode', 'full']),
    ]);
    expect(r.code).toBe(3);
    const j = JSON.parse(r.stdout);
    expect(j.fits).toBe(false);
    expect(j.patch).toBeNull();
    expect(j.peakBytes).toBeNull();
    expect(j.message).toMatch(/^nothing fits in 10\.0 MB: patch needs at least ~[\d.]+ MB \(patch 8×8×8, batch 1\)/);
    expect(j.message).toMatch(/Full 3D U-Net on the whole volume would need ~/);
    expect(text.code).toBe(3);
    expect(text.stdout).toMatch(/nothing fits in 10\.0 MB: full needs at least/);
    expect(text.stdout).toMatch(/Use mode patch or cascade/);
  });

  it('reproduces the thesis orders of magnitude for the real MSD geometries (thesis U-Net)', async () => {
    const [b, l] = await Promise.all([
      plan(['--geometry', 'msd-brain', '--preset', 'thesis', '--norm', 'batch', '--budget-mb', '49152', '--mode', 'full', '--json']),
      plan(['--geometry', 'msd-liver', '--preset', 'thesis', '--norm', 'batch', '--budget-mb', '49152', '--mode', 'patch', '--json']),
    ]);
    const brain = JSON.parse(b.stdout);
    const liver = JSON.parse(l.stdout);
    // Brain: tens of GB (thesis: 21.5 GB during inference on PyTorch); tfjs training keeps more.
    expect(brain.fullVolumeInferenceBytes).toBeGreaterThan(10 * GB);
    expect(brain.fullVolumeInferenceBytes).toBeLessThan(100 * GB);
    expect(brain.fullVolumeBytes).toBeGreaterThan(brain.fullVolumeInferenceBytes);
    expect(brain.fits).toBe(false); // a 48 GB A40 cannot train the full U-Net on the whole brain volume in tfjs
    // Liver: hundreds of GB (thesis: failed allocating 325 GB).
    expect(liver.fullVolumeInferenceBytes).toBeGreaterThan(100 * GB);
    expect(liver.fullVolumeBytes).toBeGreaterThan(325 * GB);
    // …while the patch-wise U-Net fits the same card.
    expect(liver.fits).toBe(true);
    expect(liver.peakBytes).toBeLessThan(48 * GB);
  });

  it('refuses incomplete geometry with a message naming what is missing', async () => {
    const r = await plan(['--shape', '64,64,64', '--budget-mb', '100']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--channels/);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/); // no stack trace
  });
});
