import { describe, expect, it } from 'vitest';
import { generatePhantomCase, siteStyle, SITE_ARCHETYPES, type PhantomCase } from '../site-agent/phantom/index.ts';
import { generateBrainCase } from '../site-agent/phantom/brain.ts';
import { dilateLabel, labelSet } from '../site-agent/phantom/morphology.ts';
import type { Mat4 } from '../shared/geometry.ts';

const BRAIN_SHAPE: [number, number, number] = [40, 40, 32];
const LIVER_SHAPE: [number, number, number] = [48, 48, 32];

function brain(k: number, caseIndex: number, seed = 5, shape = BRAIN_SHAPE): PhantomCase {
  return generatePhantomCase({ task: 'brain', shape, seed, siteStyle: k, caseIndex });
}
function liver(k: number, caseIndex: number, seed = 5, shape = LIVER_SHAPE): PhantomCase {
  return generatePhantomCase({ task: 'liver', shape, seed, siteStyle: k, caseIndex });
}

/** Values of the 6-neighbours (inside the volume) of every voxel whose label is `value`. */
function neighbourValues(label: Uint8Array, dims: readonly number[], value: number): Set<number> {
  const [X, Y, Z] = dims as [number, number, number];
  const seen = new Set<number>();
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      for (let x = 0; x < X; x++) {
        const i = (z * Y + y) * X + x;
        if (label[i] !== value) continue;
        if (x > 0) seen.add(label[i - 1]!);
        if (x < X - 1) seen.add(label[i + 1]!);
        if (y > 0) seen.add(label[i - X]!);
        if (y < Y - 1) seen.add(label[i + X]!);
        if (z > 0) seen.add(label[i - X * Y]!);
        if (z < Z - 1) seen.add(label[i + X * Y]!);
      }
    }
  }
  return seen;
}

function counts(label: Uint8Array, classes: number): number[] {
  const c = new Array<number>(classes).fill(0);
  for (const v of label) c[v]!++;
  return c;
}

describe('phantom determinism', () => {
  it('same seed, style and case give identical arrays and geometry; another seed does not', () => {
    const a = brain(1, 2);
    const b = brain(1, 2);
    expect(Buffer.from(a.image.buffer).equals(Buffer.from(b.image.buffer))).toBe(true);
    expect(Buffer.from(a.label.buffer).equals(Buffer.from(b.label.buffer))).toBe(true);
    expect(a.geometry).toEqual(b.geometry);
    const c = brain(1, 2, 6);
    expect(Buffer.from(a.image.buffer).equals(Buffer.from(c.image.buffer))).toBe(false);
    const l1 = liver(2, 0);
    const l2 = liver(2, 0);
    expect(Buffer.from(l1.image.buffer).equals(Buffer.from(l2.image.buffer))).toBe(true);
  });
});

describe('brain phantom', () => {
  const cases = [0, 1].flatMap((k) => [0, 1, 2, 3, 4, 5].map((i) => ({ k, i, c: brain(k, i) })));

  it('is a float32 [X,Y,Z,4] image with a uint8 label on the same grid', () => {
    for (const { c } of cases) {
      expect(c.imageDatatype).toBe('float32');
      expect(c.image).toBeInstanceOf(Float32Array);
      expect(c.imageDims).toEqual([...BRAIN_SHAPE, 4]);
      expect(c.label).toBeInstanceOf(Uint8Array);
      expect(c.labelDims).toEqual(BRAIN_SHAPE);
      expect(c.geometry.shape).toEqual(BRAIN_SHAPE);
    }
  });

  it('has exactly-zero background outside the head, non-zero finite voxels inside, in all 4 channels alike', () => {
    for (const { c } of cases) {
      const N = c.label.length;
      let inside = 0;
      let channelDisagreements = 0;
      let labelOutside = 0;
      let bad = 0;
      for (let i = 0; i < N; i++) {
        const isInside = c.image[i]! !== 0;
        if (isInside) inside++;
        for (let ch = 1; ch < 4; ch++) if ((c.image[i + ch * N]! !== 0) !== isInside) channelDisagreements++;
        if (c.label[i]! > 0 && !isInside) labelOutside++;
      }
      for (const v of c.image) if (!(Number.isFinite(v) && v >= 0)) bad++;
      expect({ channelDisagreements, labelOutside, bad }).toEqual({ channelDisagreements: 0, labelOutside: 0, bad: 0 });
      // A head, not an empty or a full box: roughly 10–40% of the volume.
      expect(inside / N).toBeGreaterThan(0.1);
      expect(inside / N).toBeLessThan(0.4);
      // Corners are air.
      expect(c.image[0]).toBe(0);
      expect(c.image[N - 1]).toBe(0);
    }
  });

  it('contains all three tumour classes in most cases', () => {
    const complete = cases.filter(({ c }) => counts(c.label, 4).every((n) => n > 0)).length;
    expect(complete).toBeGreaterThanOrEqual(Math.ceil(cases.length * 0.8));
    for (const { c } of cases) expect(counts(c.label, 256).slice(4).every((n) => n === 0)).toBe(true);
  });

  it('nests the classes: core (2) only touches rim (3); rim only touches core or oedema (1)', () => {
    for (const { c } of cases) {
      for (const v of neighbourValues(c.label, c.labelDims, 2)) expect([2, 3]).toContain(v);
      for (const v of neighbourValues(c.label, c.labelDims, 3)) expect([1, 2, 3]).toContain(v);
      // And the whole tumour (2 ∪ 3) lies inside the region oedema encloses.
      const whole = new Uint8Array(c.label.length);
      for (let i = 0; i < whole.length; i++) whole[i] = c.label[i]! > 0 ? 1 : 0;
      for (let i = 0; i < whole.length; i++) if (c.label[i] === 2 || c.label[i] === 3) expect(whole[i]).toBe(1);
    }
  });

  it('separates classes only by combining modalities (each contrast confuses a pair; every pair has a separating contrast)', () => {
    // Best single-threshold balanced accuracy per modality and class pair, over interior samples:
    // 0 = healthy tissue in a ring 2–4 voxels around the tumour, 1–3 = tumour labels.
    const shape: [number, number, number] = [48, 48, 36];
    const acc = Array.from({ length: 4 }, () => new Map<string, number>());
    const n = 3;
    for (let ci = 0; ci < n; ci++) {
      const c = generatePhantomCase({ task: 'brain', shape, seed: 11, siteStyle: 0, caseIndex: ci });
      const N = c.label.length;
      const tumour = new Uint8Array(N);
      for (let i = 0; i < N; i++) tumour[i] = c.label[i]! > 0 ? 1 : 0;
      const near = tumour.slice();
      dilateLabel(near, shape, labelSet(1), labelSet(0), 2);
      const far = tumour.slice();
      for (let s = 0; s < 4; s++) {
        dilateLabel(far, shape, labelSet(1), labelSet(0), 9);
        for (let i = 0; i < N; i++) if (far[i] === 9) far[i] = 1;
      }
      const samples: number[][][] = [0, 1, 2, 3].map(() => [[], [], [], []]);
      for (let i = 0; i < N; i++) {
        const cls = c.label[i]! > 0 ? c.label[i]! : far[i] === 1 && near[i] === 0 && c.image[i]! > 0 ? 0 : -1;
        if (cls < 0) continue;
        for (let ch = 0; ch < 4; ch++) samples[cls]![ch]!.push(c.image[i + ch * N]!);
      }
      for (let ch = 0; ch < 4; ch++) {
        for (let a = 0; a < 4; a++) {
          for (let b = a + 1; b < 4; b++) {
            const key = `${a}-${b}`;
            acc[ch]!.set(key, (acc[ch]!.get(key) ?? 0) + bestThresholdAccuracy(samples[a]![ch]!, samples[b]![ch]!) / n);
          }
        }
      }
    }
    // No single modality separates all classes: each one has a pair it cannot tell apart.
    for (let ch = 0; ch < 4; ch++) expect(Math.min(...acc[ch]!.values())).toBeLessThan(0.8);
    // Together they do: every pair is cleanly separated by at least one modality.
    for (const key of acc[0]!.keys()) expect(Math.max(...acc.map((m) => m.get(key)!))).toBeGreaterThan(0.95);
    // The designed roles: FLAIR for oedema vs healthy, t1gd for the enhancing rim, T1w for the core.
    expect(acc[0]!.get('0-1')).toBeGreaterThan(0.95);
    expect(acc[2]!.get('1-3')).toBeGreaterThan(0.95);
    expect(acc[1]!.get('0-2')).toBeGreaterThan(0.9);
  });
});

/** Best balanced accuracy of a one-threshold classifier between two samples (either direction). */
function bestThresholdAccuracy(a: number[], b: number[]): number {
  if (a.length === 0 || b.length === 0) return 0.5;
  const all = [...a.map((v) => [v, 0] as const), ...b.map((v) => [v, 1] as const)].sort((p, q) => p[0] - q[0]);
  let ca = 0;
  let cb = 0;
  let best = 0.5;
  for (const [, cls] of all) {
    if (cls === 0) ca++;
    else cb++;
    const acc = 0.5 * (ca / a.length + (b.length - cb) / b.length);
    best = Math.max(best, acc, 1 - acc);
  }
  return best;
}

describe('liver phantom', () => {
  const cases = [0, 1, 3].flatMap((k) => [0, 1, 2, 3].map((i) => ({ k, i, c: liver(k, i) })));

  it('is int16 Hounsfield units with a uint8 label', () => {
    for (const { c } of cases) {
      expect(c.imageDatatype).toBe('int16');
      expect(c.image).toBeInstanceOf(Int16Array);
      expect(c.imageDims).toEqual(LIVER_SHAPE);
      expect(counts(c.label, 256).slice(3).every((n) => n === 0)).toBe(true);
    }
  });

  it('has a liver in every case, and lesions only strictly inside it', () => {
    let withLesions = 0;
    for (const { c } of cases) {
      const n = counts(c.label, 3);
      expect(n[1]).toBeGreaterThan(0.01 * c.label.length);
      if (n[2]! > 0) withLesions++;
      for (const v of neighbourValues(c.label, c.labelDims, 2)) expect([1, 2]).toContain(v);
      expect(c.facts.lesions).toBeLessThanOrEqual(5);
    }
    expect(withLesions).toBeGreaterThan(0);
  });

  it('has realistic HU: air, fat, soft tissue, bone; lesions slightly darker than liver', () => {
    for (const { k, c } of cases) {
      const N = c.label.length;
      let min = Infinity;
      let max = -Infinity;
      let fat = 0;
      let liverSum = 0;
      let liverN = 0;
      let lesionSum = 0;
      let lesionN = 0;
      for (let i = 0; i < N; i++) {
        const v = c.image[i]!;
        min = Math.min(min, v);
        max = Math.max(max, v);
        if (v > -150 && v < -50) fat++;
        if (c.label[i] === 1) {
          liverSum += v;
          liverN++;
        } else if (c.label[i] === 2) {
          lesionSum += v;
          lesionN++;
        }
      }
      expect(min).toBeGreaterThanOrEqual(-1024);
      expect(c.image[0]).toBeLessThan(-900); // a corner is air
      expect(max).toBeGreaterThan(400); // bone
      expect(fat).toBeGreaterThan(0.01 * N);
      const liverMean = liverSum / liverN;
      expect(liverMean).toBeGreaterThan(45);
      expect(liverMean).toBeLessThan(130);
      if (lesionN > 30) {
        const diff = liverMean - lesionSum / lesionN;
        expect(diff, `site ${k}`).toBeGreaterThan(3);
        expect(diff, `site ${k}`).toBeLessThan(35);
      }
    }
  });
});

describe('site styles', () => {
  it('are deterministic, distinct, and validated', () => {
    expect(siteStyle(7)).toEqual(siteStyle(7));
    expect(siteStyle(1)).not.toEqual(siteStyle(0));
    expect(siteStyle(SITE_ARCHETYPES + 1)).not.toEqual(siteStyle(1));
    expect(siteStyle(SITE_ARCHETYPES + 1).archetype).toBe(1);
    expect(() => siteStyle(-1)).toThrow(/integer ≥ 0/);
    expect(() => siteStyle(1.5)).toThrow(/integer ≥ 0/);
  });

  it('give each hospital its own spacing, orientation, affine, intensity scale and case mix', () => {
    const a = brain(0, 0);
    const b = brain(1, 0);
    expect(a.geometry.spacing).not.toEqual(b.geometry.spacing);
    expect(siteStyle(0).orientation).toBe('RAS');
    expect(siteStyle(1).orientation).toBe('LPS');
    // Column norms of the affine are the spacing; the sign pattern is the storage orientation.
    for (const c of [a, b]) {
      for (let col = 0; col < 3; col++) {
        const norm = Math.hypot(c.geometry.affine[0][col]!, c.geometry.affine[1][col]!, c.geometry.affine[2][col]!);
        expect(norm).toBeCloseTo(c.geometry.spacing[col]!, 9);
      }
    }
    expect(a.geometry.affine[0][0]).toBeGreaterThan(0);
    expect(b.geometry.affine[0][0]).toBeLessThan(0);
    expect(b.geometry.affine[1][1]).toBeLessThan(0);
    expect(b.geometry.affine[0][3]).not.toBeCloseTo(a.geometry.affine[0][3], 1);
    const meanInside = (c: PhantomCase): number => {
      let s = 0;
      let n = 0;
      for (const v of c.image) if (v !== 0) (s += v), n++;
      return s / n;
    };
    expect(meanInside(a) / meanInside(b)).toBeGreaterThan(1.5); // scanner scale 1000 vs ~500
    expect(siteStyle(1).caseMix.tumourScale).not.toBe(siteStyle(0).caseMix.tumourScale);
  });

  it('flips data together with the affine, so every voxel keeps its world position and label', () => {
    const base = siteStyle(0);
    const flipped = { ...base, flips: [true, true, false] as [boolean, boolean, boolean] };
    const shape: [number, number, number] = [24, 20, 16];
    const key = { task: 'brain' as const, seed: 3, caseIndex: 0 };
    const a = generateBrainCase({ ...key, style: base }, shape);
    const b = generateBrainCase({ ...key, style: flipped }, shape);
    expect(b.label).not.toEqual(a.label);
    const inv = invertAffine(a.geometry.affine);
    const [X, Y, Z] = shape;
    const N = X * Y * Z;
    let tumourVoxels = 0;
    let mismatches = 0;
    for (let z = 0; z < Z; z++) {
      for (let y = 0; y < Y; y++) {
        for (let x = 0; x < X; x++) {
          const w = apply(b.geometry.affine, [x, y, z]);
          const [i, j, k] = apply(inv, w).map((v) => Math.round(v)) as [number, number, number];
          const ib = (z * Y + y) * X + x;
          const ia = (k * Y + j) * X + i;
          if (b.label[ib] !== a.label[ia] || b.image[ib + 2 * N] !== a.image[ia + 2 * N]) mismatches++;
          if (a.label[ia]! > 0) tumourVoxels++;
        }
      }
    }
    expect(mismatches).toBe(0);
    expect(tumourVoxels).toBeGreaterThan(0);
    expect(b.geometry.qfac).toBe(1); // two flips: proper rotation
    expect(generateBrainCase({ ...key, style: { ...base, flips: [true, false, false] } }, shape).geometry.qfac).toBe(-1);
  });
});

function apply(m: Mat4 | number[][], p: number[]): number[] {
  return [0, 1, 2].map((r) => m[r]![0]! * p[0]! + m[r]![1]! * p[1]! + m[r]![2]! * p[2]! + m[r]![3]!);
}

/** Inverse of an affine [R t; 0 1] via the 3×3 adjugate. */
function invertAffine(m: Mat4): number[][] {
  const a = m;
  const c = (r: number, k: number): number => a[r]![k]!;
  const det =
    c(0, 0) * (c(1, 1) * c(2, 2) - c(1, 2) * c(2, 1)) - c(0, 1) * (c(1, 0) * c(2, 2) - c(1, 2) * c(2, 0)) + c(0, 2) * (c(1, 0) * c(2, 1) - c(1, 1) * c(2, 0));
  const inv = [
    [(c(1, 1) * c(2, 2) - c(1, 2) * c(2, 1)) / det, (c(0, 2) * c(2, 1) - c(0, 1) * c(2, 2)) / det, (c(0, 1) * c(1, 2) - c(0, 2) * c(1, 1)) / det],
    [(c(1, 2) * c(2, 0) - c(1, 0) * c(2, 2)) / det, (c(0, 0) * c(2, 2) - c(0, 2) * c(2, 0)) / det, (c(0, 2) * c(1, 0) - c(0, 0) * c(1, 2)) / det],
    [(c(1, 0) * c(2, 1) - c(1, 1) * c(2, 0)) / det, (c(0, 1) * c(2, 0) - c(0, 0) * c(2, 1)) / det, (c(0, 0) * c(1, 1) - c(0, 1) * c(1, 0)) / det],
  ];
  return inv.map((row) => [...row, -(row[0]! * c(0, 3) + row[1]! * c(1, 3) + row[2]! * c(2, 3))]);
}
