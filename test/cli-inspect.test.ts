import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockLabel, goodCase, mriImage, tempDir, writeDataset, writeVolume, type FixtureDataset } from './dataset-fixtures.ts';
import { runPatchfed } from './cli-fixtures.ts';


const run = (args: string[]) => runPatchfed(['inspect', ...args]);

let tmp: FixtureDataset;
let good: string;
let dead: string;
let junk: string;

beforeAll(async () => {
  tmp = await tempDir('patchfed-cli-inspect-');
  good = path.join(tmp.dir, 'good');
  await writeDataset(good, {
    cases: [
      goodCase('BRATS_001', [6, 5, 4], 1),
      goodCase('BRATS_002', [4, 4, 3], 2),
      { id: 'BRATS_003', image: mriImage([4, 4, 3], 2, 3), label: blockLabel([4, 4, 3], 1, { value: 9, at: [0, 0, 0] }) },
      { ...goodCase('BRATS_004', [4, 4, 3], 4), skipImage: true },
    ],
    test: [{ id: 'BRATS_100', image: mriImage([4, 4, 3], 2, 5) }],
  });
  dead = path.join(tmp.dir, 'dead');
  await writeDataset(dead, { cases: [{ id: 'only', image: mriImage([4, 4, 3], 2, 1), label: blockLabel([4, 4, 3], 7) }] });
  junk = path.join(tmp.dir, 'junk.nii');
  await writeFile(junk, 'not a nifti file at all');
  await writeVolume(path.join(tmp.dir, 'one.nii.gz'), { data: new Int16Array(24).map((_, i) => i - 4), dims: [2, 3, 4], datatype: 'int16', spacing: [0.5, 0.5, 3] });
}, 60_000);

afterAll(async () => {
  await tmp?.cleanup();
});

describe('patchfed inspect <file>', () => {
  it('prints header facts and exits 0', async () => {
    const r = await run([path.join(tmp.dir, 'one.nii.gz')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^dims\s+2 x 3 x 4\s+\(x y z\)$/m);
    expect(r.stdout).toMatch(/^datatype\s+int16 \(code 4\)$/m);
    expect(r.stdout).toMatch(/^spacing\s+0\.5 x 0\.5 x 3 mm$/m);
    expect(r.stdout).toMatch(/^values\s+min -4 {2}max 19 /m);
  });

  it('--json gives the documented keys', async () => {
    const r = await run([path.join(tmp.dir, 'one.nii.gz'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('nifti-file');
    for (const key of ['file', 'fileSizeBytes', 'compressed', 'niftiVersion', 'endianness', 'dims', 'voxelCount', 'dataBytes', 'datatype', 'datatypeCode', 'bitpix', 'pixdim', 'spacing', 'xyztUnits', 'spatialUnits', 'qformCode', 'sformCode', 'affine', 'affineSource', 'scaling', 'stats', 'voxOffset', 'description']) {
      expect(j, key).toHaveProperty(key);
    }
    expect(j.dims).toEqual([2, 3, 4]);
    expect(j.compressed).toBe(true);
    expect(j.stats.min).toBe(-4);
  });

  it('exits 1 with a one-line message for an unreadable file and a missing path', async () => {
    const r = await run([junk]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^patchfed: .*junk\.nii: /);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const m = await run([path.join(tmp.dir, 'nope.nii.gz')]);
    expect(m.code).toBe(1);
    expect(m.stderr).toMatch(/^patchfed: .*nope\.nii\.gz: no such file or folder/);
  });
});

describe('patchfed inspect <dataset>', () => {
  it('lists cases, shapes, label counts and every problem; exits 0 when some case is usable', async () => {
    const r = await run([good]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^training\s+4 listed \(numTraining 4\), 2 usable$/m);
    expect(r.stdout).toMatch(/^BRATS_001\s+6x5x4x2\s+1x1x1\s+0:96 1:24$/m);
    expect(r.stdout).toMatch(/^BRATS_003\s+4x4x3x2\s+1x1x1\s+unusable$/m);
    expect(r.stdout).toMatch(/- case BRATS_004: imagesTr\/BRATS_004\.nii\.gz: file not found/);
    expect(r.stdout).toMatch(/- case BRATS_003: labelsTr\/BRATS_003\.nii\.gz: label values 9 are not among the dataset's labels \(0, 1\)/);
  });

  it('--json gives the documented keys and counts', async () => {
    const r = await run([good, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j).sort()).toEqual(
      ['kind', 'dir', 'name', 'modalities', 'labels', 'numTraining', 'listedTraining', 'usableCases', 'cases', 'listedTest', 'labelTotals', 'testImages', 'problems'].sort(),
    );
    expect(j.kind).toBe('msd-dataset');
    expect(j.modalities).toEqual(['FLAIR', 'T1w']);
    expect(j.usableCases).toBe(2);
    expect(j.cases.map((c: { id: string }) => c.id)).toEqual(['BRATS_001', 'BRATS_002', 'BRATS_003']);
    const first = j.cases[0];
    expect(Object.keys(first).sort()).toEqual(['channels', 'id', 'image', 'imageDatatype', 'label', 'labelCounts', 'labelDatatype', 'shape', 'spacing', 'usable'].sort());
    expect(first.labelCounts).toEqual({ '0': 96, '1': 24 });
    expect(j.cases[2].labelCounts).toBeNull();
    // BRATS_002 is 4x4x3 with foreground at x = 1, y = 1..2, all z: 6 voxels
    expect(j.labelTotals).toEqual({ '0': 96 + 42, '1': 24 + 6 });
    expect(j.testImages).toEqual([{ id: 'BRATS_100', image: 'imagesTs/BRATS_100.nii.gz', shape: [4, 4, 3], channels: 2, spacing: [1, 1, 1], imageDatatype: 'float32', usable: true }]);
    expect(j.problems).toEqual([
      { caseId: 'BRATS_004', file: 'imagesTr/BRATS_004.nii.gz', reason: 'file not found' },
      { caseId: 'BRATS_003', file: 'labelsTr/BRATS_003.nii.gz', reason: "label values 9 are not among the dataset's labels (0, 1)" },
    ]);
  });

  it('exits 1 when no case is usable, after printing the report', async () => {
    const r = await run([dead, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).usableCases).toBe(0);
    expect(r.stderr).toMatch(/^patchfed: dataset 'Tiny' \(.*\) has no usable training case/);
  });

  it('exits 1 for a folder without dataset.json', async () => {
    const r = await run([path.join(good, 'imagesTr')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/dataset\.json: not found/);
  });
});

describe('usage errors', () => {
  it('exits 2 without a path or with a bad option value', async () => {
    expect((await run([])).code).toBe(2);
    const r = await run([good, '--max-voxels', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--max-voxels must be an integer/);
  });
});
