import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import type { CaseVolume, Origin3, Shape3 } from '../site-agent/pipeline/case.ts';
import { extractPatch, patchHasForeground } from '../site-agent/pipeline/patches.ts';
import { assembleBatch, collectClassLocations, createRng, PatchSampler } from '../site-agent/pipeline/sampler.ts';
import { labelsToOneHot } from '../site-agent/pipeline/tensors.ts';
import { randomCase } from './pipeline-fixtures.ts';

/** 16x12x10 case with one small foreground blob (class 1) and one class-2 voxel. */
function sparseCase(): CaseVolume {
  const shape: Shape3 = [16, 12, 10];
  const c = randomCase(shape, 2, 3, 21, 'sparse');
  const label = new Uint8Array(16 * 12 * 10);
  for (let x = 12; x < 14; x++) for (let y = 2; y < 4; y++) for (let z = 7; z < 9; z++) label[(x * 12 + y) * 10 + z] = 1;
  label[(1 * 12 + 10) * 10 + 1] = 2;
  return { ...c, label };
}

const patch: Shape3 = [4, 4, 4];

describe('createRng', () => {
  it('is deterministic per seed and in [0, 1)', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const sa = Array.from({ length: 100 }, a);
    expect(Array.from({ length: 100 }, b)).toEqual(sa);
    expect(Array.from({ length: 100 }, c)).not.toEqual(sa);
    expect(sa.every((v) => v >= 0 && v < 1)).toBe(true);
    expect(() => createRng(1.5)).toThrow(PatchFedError);
  });
});

describe('PatchSampler', () => {
  it('draws the same origins for the same seed, anywhere in the volume (not only on the grid)', () => {
    const c = sparseCase();
    const a = new PatchSampler(c, patch, { seed: 5 }).sampleOrigins(200);
    expect(new PatchSampler(c, patch, { seed: 5 }).sampleOrigins(200)).toEqual(a);
    expect(new PatchSampler(c, patch, { seed: 6 }).sampleOrigins(200)).not.toEqual(a);
    for (const o of a) {
      expect(o[0]).toBeGreaterThanOrEqual(0);
      expect(o[0]).toBeLessThanOrEqual(12);
      expect(o[1]).toBeLessThanOrEqual(8);
      expect(o[2]).toBeLessThanOrEqual(6);
    }
    expect(a.some((o) => o.some((v) => v % 4 !== 0))).toBe(true);
    expect(new Set(a.map((o) => o[0]))).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
  });

  it('without oversampling or skipping, most patches of a sparse case are empty', () => {
    const c = sparseCase();
    const o = new PatchSampler(c, patch, { seed: 1 }).sampleOrigins(100);
    const withFg = o.filter((x) => patchHasForeground(c.label!, c.shape, x, patch)).length;
    expect(withFg).toBeLessThan(30);
  });

  it('forces exactly floor(n·rate) patches to contain foreground, also across calls of size 1', () => {
    const c = sparseCase();
    const s = new PatchSampler(c, patch, { seed: 2, foregroundRate: 0.33 });
    const origins: Origin3[] = [];
    for (let i = 0; i < 100; i++) origins.push(...s.sampleOrigins(1));
    expect(s.forcedCount).toBe(33);
    // sample i is forced iff floor((i+1)·0.33) > floor(i·0.33): i = 3, 6, 9, …
    for (const i of [3, 6, 9, 96]) expect(patchHasForeground(c.label!, c.shape, origins[i]!, patch)).toBe(true);
    const all = new PatchSampler(c, patch, { seed: 3, foregroundRate: 1 }).sampleOrigins(60);
    expect(all.every((o) => patchHasForeground(c.label!, c.shape, o, patch))).toBe(true);
  });

  it('picks foreground classes uniformly, so a single-voxel class still gets patches', () => {
    const c = sparseCase();
    const s = new PatchSampler(c, patch, { seed: 4, foregroundRate: 1 });
    expect(s.foregroundClasses).toEqual([1, 2]);
    const o = s.sampleOrigins(100);
    const hasClass2 = o.filter((x) => extractPatch(c, x, patch).label!.includes(2)).length;
    expect(hasClass2).toBeGreaterThan(30);
    expect(hasClass2).toBeLessThan(70);
  });

  it('skipEmpty returns only patches with foreground, and refuses cases without any', () => {
    const c = sparseCase();
    const o = new PatchSampler(c, patch, { seed: 7, skipEmpty: true }).sampleOrigins(50);
    expect(o.every((x) => patchHasForeground(c.label!, c.shape, x, patch))).toBe(true);
    const empty = { ...c, label: new Uint8Array(c.label!.length) };
    const s = new PatchSampler(empty, patch, { seed: 7, skipEmpty: true });
    expect(s.hasForeground).toBe(false);
    expect(() => s.sampleOrigins(1)).toThrow(/case sparse has no foreground voxels/);
    // without skipEmpty an all-background case still yields (random) patches, even when "forced"
    expect(new PatchSampler(empty, patch, { seed: 7, foregroundRate: 1 }).sampleOrigins(3)).toHaveLength(3);
  });

  it('puts volumes smaller than the patch at origin 0 (zero-padded)', () => {
    const c = randomCase([3, 8, 2], 1, 2, 1);
    const o = new PatchSampler(c, patch, { seed: 1, foregroundRate: 0.5 }).sampleOrigins(20);
    expect(o.every((x) => x[0] === 0 && x[2] === 0 && x[1] >= 0 && x[1] <= 4)).toBe(true);
  });

  it('validates its options', () => {
    const c = sparseCase();
    expect(() => new PatchSampler(c, patch, { seed: 1, foregroundRate: 1.5 })).toThrow(/foregroundRate/);
    expect(() => new PatchSampler({ ...c, label: undefined }, patch, { seed: 1 })).toThrow(/no label volume/);
  });
});

describe('collectClassLocations', () => {
  it('keeps at most cap distinct voxels per class, all of that class', () => {
    const label = new Uint8Array(1000);
    for (let i = 0; i < 1000; i += 7) label[i] = 1;
    label[500] = 3;
    const m = collectClassLocations(label, 10, createRng(1));
    expect([...m.keys()].sort()).toEqual([1, 3]);
    const ones = Array.from(m.get(1)!);
    expect(ones).toHaveLength(10);
    expect(new Set(ones).size).toBe(10);
    expect(ones.every((i) => label[i] === 1)).toBe(true);
    expect(ones.some((i) => i > 70)).toBe(true); // reservoir, not the first ten
    expect(Array.from(m.get(3)!)).toEqual([500]);
  });
});

describe('assembleBatch', () => {
  it('stacks patches NDHWC with one-hot labels', () => {
    const a = randomCase([5, 5, 5], 2, 3, 1, 'a');
    const b = randomCase([3, 6, 4], 2, 3, 2, 'b');
    const items = [
      { case: a, origin: [1, 0, 1] as Origin3 },
      { case: b, origin: [0, 3, 2] as Origin3 }, // runs past b's end: zero padding
    ];
    const batch = assembleBatch(items, patch, 3);
    expect(batch.imageShape).toEqual([2, 4, 4, 4, 2]);
    expect(batch.oneHotShape).toEqual([2, 4, 4, 4, 3]);
    items.forEach((it, i) => {
      const p = extractPatch(it.case, it.origin, patch);
      expect(batch.image.subarray(i * 128, (i + 1) * 128)).toEqual(p.image);
      expect(batch.labels.subarray(i * 64, (i + 1) * 64)).toEqual(p.label);
    });
    expect(batch.oneHot).toEqual(labelsToOneHot(batch.labels, 3));
    expect(() => assembleBatch([items[0]!, { case: randomCase([4, 4, 4], 1, 3, 1), origin: [0, 0, 0] }], patch, 3)).toThrow(/mixes 2- and 1-channel/);
    expect(() => assembleBatch(items, patch, 2)).toThrow(/label value 2/);
  });
});
