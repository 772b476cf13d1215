import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { BadCaseError } from '../site-agent/data/decode.ts';
import { openMsdDataset } from '../site-agent/data/msd-dataset.ts';
import { splitCaseIds } from '../site-agent/data/split.ts';
import { blockLabel, goodCase, mriImage, tempDir, writeDataset, type FixtureDataset } from './dataset-fixtures.ts';

let ds: FixtureDataset | undefined;
afterEach(async () => {
  await ds?.cleanup();
  ds = undefined;
});

async function newDir(): Promise<string> {
  ds = await tempDir();
  return ds.dir;
}

describe('openMsdDataset on a good dataset', () => {
  it('reads metadata and headers, and loads a preprocessed case in (C, X, Y, Z) order', async () => {
    const dir = await newDir();
    const shapes: [number, number, number][] = [[6, 5, 4], [5, 7, 3], [4, 4, 6]];
    const cases = shapes.map((s, i) => goodCase(`BRATS_00${i + 1}`, s, i + 1));
    cases[1]!.image!.spacing = [0.5, 0.75, 2];
    await writeDataset(dir, { cases, test: [{ id: 'BRATS_100', image: mriImage([4, 4, 4], 2, 9) }] });

    const d = await openMsdDataset(dir);
    expect(d.name).toBe('Tiny');
    expect(d.modalities).toEqual(['FLAIR', 'T1w']);
    expect(d.labels).toEqual([{ value: 0, name: 'background' }, { value: 1, name: 'tumour' }]);
    expect(d.cases.map((c) => c.id)).toEqual(['BRATS_001', 'BRATS_002', 'BRATS_003']);
    expect(d.cases.map((c) => c.shape)).toEqual(shapes);
    expect(d.cases[1]!.spacing).toEqual([0.5, 0.75, 2]);
    expect(d.cases.every((c) => c.channels === 2)).toBe(true);
    expect(d.problems).toEqual([]);
    expect(d.largestShape()).toEqual([6, 7, 6]);
    expect(d.testImages.map((t) => t.id)).toEqual(['BRATS_100']);

    const c = await d.load('BRATS_002');
    const [X, Y, Z] = [5, 7, 3];
    expect(c.id).toBe('BRATS_002');
    expect(c.shape).toEqual([X, Y, Z]);
    expect(c.channels).toBe(2);
    expect(c.image).toBeInstanceOf(Float32Array);
    expect(c.image.length).toBe(2 * X * Y * Z);
    expect(c.label).toBeInstanceOf(Uint8Array);
    expect(c.label.length).toBe(X * Y * Z);
    expect(c.geometry.spacing).toEqual([0.5, 0.75, 2]);

    // Recompute channel 1 by hand from the fixture and compare voxel by voxel.
    const src = cases[1]!.image!.data as Float32Array;
    const n = X * Y * Z;
    const nz = [...src.subarray(n, 2 * n)].filter((v) => v !== 0);
    const mean = nz.reduce((a, b) => a + b, 0) / nz.length;
    const std = Math.sqrt(nz.reduce((a, b) => a + (b - mean) ** 2, 0) / nz.length);
    const lab = cases[1]!.label!.data;
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++)
        for (let z = 0; z < Z; z++) {
          const v = src[n + x + X * (y + Y * z)]!;
          expect(c.image[((1 * X + x) * Y + y) * Z + z]).toBeCloseTo(v === 0 ? 0 : (v - mean) / std, 4);
          expect(c.label[(x * Y + y) * Z + z]).toBe(lab[x + X * (y + Y * z)]);
        }
    expect(c.labelCounts.get(1)).toBe([...lab].filter((v) => v === 1).length);

    const t = await d.loadTestImage('BRATS_100');
    expect(t.shape).toEqual([4, 4, 4]);
    expect(t.image.length).toBe(2 * 64);
  });

  it('splits usable cases 60/20/20 by seed, independent of dataset.json order', async () => {
    const dir = await newDir();
    const cases = Array.from({ length: 6 }, (_, i) => goodCase(`case_${i}`, [3, 3, 2], i));
    await writeDataset(dir, { cases });
    const a = (await openMsdDataset(dir, { seed: 42 })).split();
    await writeDataset(dir, { cases: [...cases].reverse() });
    const reordered = await openMsdDataset(dir, { seed: 42 });
    expect(reordered.split()).toEqual(a);
    expect(reordered.split(42)).toEqual(splitCaseIds(cases.map((c) => c.id), 42));
    expect([a.train.length, a.validation.length, a.test.length]).toEqual([4, 1, 1]);
  });
});

describe('validation: bad cases are reported and skipped', () => {
  it('reports missing files, shape mismatch and wrong channel count from headers', async () => {
    const dir = await newDir();
    await writeDataset(dir, {
      cases: [
        goodCase('ok_1', [4, 4, 3], 1),
        { ...goodCase('no_image', [4, 4, 3], 2), skipImage: true },
        { ...goodCase('no_label', [4, 4, 3], 3), skipLabel: true },
        { id: 'mismatch', image: mriImage([4, 4, 3], 2, 4), label: blockLabel([4, 5, 3]) },
        { id: 'three_ch', image: mriImage([4, 4, 3], 3, 5), label: blockLabel([4, 4, 3]) },
      ],
    });
    const d = await openMsdDataset(dir);
    expect(d.cases.map((c) => c.id)).toEqual(['ok_1']);
    const byCase = Object.fromEntries(d.problems.map((p) => [p.caseId, p]));
    expect(byCase.no_image).toEqual({ caseId: 'no_image', file: path.join(dir, 'imagesTr', 'no_image.nii.gz'), reason: 'file not found' });
    expect(byCase.no_label).toEqual({ caseId: 'no_label', file: path.join(dir, 'labelsTr', 'no_label.nii.gz'), reason: 'file not found' });
    expect(byCase.mismatch.file).toBe(path.join(dir, 'labelsTr', 'mismatch.nii.gz'));
    expect(byCase.mismatch.reason).toMatch(/^label shape 4x5x3 does not match image shape 4x4x3/);
    expect(byCase.three_ch.file).toBe(path.join(dir, 'imagesTr', 'three_ch.nii.gz'));
    expect(byCase.three_ch.reason).toMatch(/^image has 3 channel\(s\) \(dims 4x4x3x3\) but dataset\.json lists 2 modalities \(FLAIR, T1w\)/);
    await expect(d.load('ok_1')).resolves.toMatchObject({ id: 'ok_1' });
    await expect(d.load('no_image')).rejects.toThrow(/has no usable case 'no_image'/);
  });

  it('a single-channel dataset accepts 3-D images and refuses 4-D ones', async () => {
    const dir = await newDir();
    await writeDataset(dir, {
      modality: { '0': 'T2' },
      cases: [goodCase('one', [4, 4, 3], 1, 1), goodCase('two', [4, 4, 3], 2, 2)],
    });
    const d = await openMsdDataset(dir);
    expect(d.cases.map((c) => c.id)).toEqual(['one']);
    expect(d.problems[0]!.reason).toMatch(/image has 2 channel\(s\).*lists 1 modality \(T2\)/);
  });

  it('finds undeclared label values when the case is decoded, records it and skips it', async () => {
    const dir = await newDir();
    await writeDataset(dir, {
      cases: [
        goodCase('good_a', [4, 4, 3], 1),
        { id: 'bad_label', image: mriImage([4, 4, 3], 2, 2), label: blockLabel([4, 4, 3], 1, { value: 5, at: [3, 3, 2] }) },
        goodCase('good_b', [4, 4, 3], 3),
      ],
    });
    const seen: string[] = [];
    const d = await openMsdDataset(dir, { onProblem: (p) => seen.push(p.caseId!) });
    expect(d.cases.map((c) => c.id)).toEqual(['bad_label', 'good_a', 'good_b']); // headers are fine
    const splitBefore = d.split(1);

    const err = await d.load('bad_label').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadCaseError);
    expect(err).toBeInstanceOf(PatchFedError);
    const problem = (err as BadCaseError).problem;
    expect(problem).toEqual({
      caseId: 'bad_label',
      file: path.join(dir, 'labelsTr', 'bad_label.nii.gz'),
      reason: "label values 5 are not among the dataset's labels (0, 1)",
    });
    expect(d.problems).toContainEqual(problem);
    expect(seen).toEqual(['bad_label']);
    expect(d.cases.map((c) => c.id)).toEqual(['good_a', 'good_b']);
    expect(d.isUsable('bad_label')).toBe(false);
    // the other cases keep their parts of the split
    const splitAfter = d.split(1);
    for (const part of ['train', 'validation', 'test'] as const) {
      expect(splitAfter[part]).toEqual(splitBefore[part].filter((id) => id !== 'bad_label'));
    }
    // later loads fail fast with the same problem, without decoding again
    const decodes = d.cacheStats().decodes;
    await expect(d.load('bad_label')).rejects.toThrow(/label values 5/);
    expect(d.cacheStats().decodes).toBe(decodes);

    const ids: string[] = [];
    for await (const c of d.iterate(['good_a', 'bad_label', 'good_b'])) ids.push(c.id);
    expect(ids).toEqual(['good_a', 'good_b']);
    await expect(async () => {
      for await (const _ of d.iterate(['bad_label'])) void _;
    }).rejects.toThrow(/none of the 1 requested case\(s\) is usable:\n {2}- case bad_label: .*label values 5/);
  });

  it('reports images with NaN/Inf (refused by the reader) as bad cases', async () => {
    const dir = await newDir();
    const nan = mriImage([4, 4, 3], 2, 7);
    (nan.data as Float32Array)[10] = Number.NaN;
    await writeDataset(dir, { cases: [goodCase('fine', [4, 4, 3], 1), { id: 'has_nan', image: nan, label: blockLabel([4, 4, 3]) }] });
    const d = await openMsdDataset(dir);
    await expect(d.load('has_nan')).rejects.toThrow(/has_nan\.nii\.gz: .*NaN or Inf/);
    const p = d.problems.find((q) => q.caseId === 'has_nan')!;
    expect(p.file).toBe(path.join(dir, 'imagesTr', 'has_nan.nii.gz'));
    expect(p.reason).toMatch(/NaN or Inf/);
    expect(d.cases.map((c) => c.id)).toEqual(['fine']);
  });

  it('throws PatchFedError listing every problem when no case is usable', async () => {
    const dir = await newDir();
    await writeDataset(dir, {
      cases: [
        { ...goodCase('gone', [4, 4, 3], 1), skipImage: true },
        { id: 'wrong_shape', image: mriImage([4, 4, 3], 2, 2), label: blockLabel([3, 4, 3]) },
      ],
    });
    const err = await openMsdDataset(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PatchFedError);
    expect((err as PatchFedError).code).toBe('dataset-no-usable-case');
    expect((err as Error).message).toMatch(/dataset 'Tiny' \(.*\) has no usable training case:/);
    expect((err as Error).message).toMatch(/- case gone: .*imagesTr\/gone\.nii\.gz: file not found/);
    expect((err as Error).message).toMatch(/- case wrong_shape: .*labelsTr\/wrong_shape\.nii\.gz: label shape 3x4x3 does not match/);
  });

  it('names a file that is not NIfTI', async () => {
    const dir = await newDir();
    await writeDataset(dir, { cases: [goodCase('ok', [4, 4, 3], 1), goodCase('junk', [4, 4, 3], 2)] });
    await writeFile(path.join(dir, 'imagesTr', 'junk.nii.gz'), 'this is not an image');
    const d = await openMsdDataset(dir);
    const p = d.problems.find((q) => q.caseId === 'junk')!;
    expect(p.file).toBe(path.join(dir, 'imagesTr', 'junk.nii.gz'));
    expect(p.reason.length).toBeGreaterThan(5);
    expect(d.cases.map((c) => c.id)).toEqual(['ok']);
  });
});

describe('CT datasets', () => {
  it('normalises with dataset-wide foreground statistics: clip to 0.5/99.5 percentiles, then z-score', async () => {
    const dir = await newDir();
    const shape: [number, number, number] = [5, 4, 2];
    const n = 40;
    const mk = (offset: number) => {
      const img = new Int16Array(n).fill(-1000);
      const lab = new Uint8Array(n);
      for (let i = 0; i < 10; i++) {
        img[i] = offset + i; // foreground values
        lab[i] = i < 5 ? 1 : 2;
      }
      img[39] = 3000; // bright background (bone / metal)
      return { image: { data: img, dims: [...shape], datatype: 'int16' as const }, label: { data: lab, dims: [...shape], datatype: 'uint8' as const } };
    };
    await writeDataset(dir, {
      modality: { '0': 'CT' },
      labels: { '0': 'background', '1': 'liver', '2': 'cancer' },
      cases: [{ id: 'liver_0', ...mk(0) }, { id: 'liver_1', ...mk(100) }],
    });
    const d = await openMsdDataset(dir);
    const [stats] = await d.intensityStats();
    // foreground pool: 0..9 and 100..109 (20 values)
    const fg = [...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 10 }, (_, i) => 100 + i)];
    const mean = fg.reduce((a, b) => a + b, 0) / 20;
    const std = Math.sqrt(fg.reduce((a, b) => a + (b - mean) ** 2, 0) / 20);
    const lower = 0 + (1 - 0) * (0.005 * 19); // numpy linear percentile
    const upper = 108 + (109 - 108) * ((0.995 * 19) % 1);
    expect(stats!.mean).toBeCloseTo(mean, 10);
    expect(stats!.std).toBeCloseTo(std, 10);
    expect(stats!.lower).toBeCloseTo(lower, 10);
    expect(stats!.upper).toBeCloseTo(upper, 10);

    const c = await d.load('liver_1');
    const [X, Y, Z] = shape;
    const at = (x: number, y: number, z: number) => c.image[(x * Y + y) * Z + z];
    expect(at(0, 0, 0)).toBeCloseTo((100 - mean) / std, 5); // voxel 0: value 100
    expect(at(4, 3, 1)).toBeCloseTo((upper - mean) / std, 5); // voxel 39: 3000 clipped
    expect(at(1, 1, 1)).toBeCloseTo((lower - mean) / std, 5); // background -1000 clipped
    expect(c.normalization).toEqual([{ scheme: 'ct-clip-zscore', lower: stats!.lower, upper: stats!.upper, mean: stats!.mean, std: stats!.std }]);
  });

  it('uses given ctStats without decoding for statistics, and refuses incomplete ones', async () => {
    const dir = await newDir();
    const shape: [number, number, number] = [3, 3, 2];
    await writeDataset(dir, {
      modality: { '0': 'ct' },
      cases: [{ id: 'c1', image: { data: new Float32Array(18).fill(50), dims: [...shape], datatype: 'float32' }, label: blockLabel(shape) }],
    });
    const d = await openMsdDataset(dir, { ctStats: [{ lower: 0, upper: 40, mean: 20, std: 10, samples: 1 }] });
    const c = await d.load('c1');
    expect([...c.image].every((v) => Math.abs(v - 2) < 1e-6)).toBe(true); // 50 -> clip 40 -> (40-20)/10
    expect(d.cacheStats().decodes).toBe(1);
    await expect(openMsdDataset(dir, { ctStats: [] })).rejects.toThrow(/ctStats\[0\] must give finite/);
  });

  it('refuses a CT dataset with no foreground anywhere', async () => {
    const dir = await newDir();
    const shape: [number, number, number] = [3, 3, 2];
    await writeDataset(dir, {
      modality: { '0': 'CT' },
      cases: [{ id: 'empty', image: { data: new Int16Array(18), dims: [...shape], datatype: 'int16' }, label: { data: new Uint8Array(18), dims: [...shape], datatype: 'uint8' } }],
    });
    const d = await openMsdDataset(dir);
    await expect(d.load('empty')).rejects.toThrow(/no usable training case has foreground/);
  });
});
