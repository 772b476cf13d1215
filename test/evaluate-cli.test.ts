/**
 * `patchfed evaluate` through the real CLI on NIfTI files it has never seen: an oblique-free but
 * flipped (LAS) anisotropic grid, so the distances must come from the affine's voxel sizes along
 * the right axes; pairing by case name with missing pairs reported; the --json / --csv keys; and
 * the refusals (different grids, bad label values, missing folders, usage errors).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Geometry, Mat4 } from '../shared/geometry.ts';
import { writeNifti } from '../shared/nifti/index.ts';
import type { DatatypeName } from '../shared/volume.ts';
import { runPatchfed } from './cli-fixtures.ts';
import { TempDirs } from './learning-fixtures.ts';

const temp = new TempDirs();
let root: string;
let preds: string;
let labels: string;

const DIMS: [number, number, number] = [24, 20, 12];
/** Voxel sizes along NIfTI x, y, z in mm; x runs right-to-left (LAS), as many scanners store it. */
const SPACING: [number, number, number] = [0.8, 1.25, 3];

function geometry(spacing = SPACING, origin: [number, number, number] = [40, -60, 12], units = 2): Geometry {
  const affine: Mat4 = [
    [-spacing[0], 0, 0, origin[0]],
    [0, spacing[1], 0, origin[1]],
    [0, 0, spacing[2], origin[2]],
    [0, 0, 0, 1],
  ];
  return { shape: DIMS, spacing, qformCode: 1, sformCode: 1, affine, affineSource: 'sform', qfac: 1, xyztUnits: units };
}

/** A label map in NIfTI order (x fastest) from a per-voxel rule. */
function labelMap(rule: (x: number, y: number, z: number) => number, datatype: DatatypeName = 'uint8') {
  const [X, Y, Z] = DIMS;
  const data = datatype === 'int16' ? new Int16Array(X * Y * Z) : datatype === 'float32' ? new Float32Array(X * Y * Z) : new Uint8Array(X * Y * Z);
  for (let z = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++) data[x + X * (y + Y * z)] = rule(x, y, z);
  return { data, dims: [...DIMS], datatype };
}

/** A one-voxel-thick plate perpendicular to z at z = z0 (class 1), and a small box (class 2). */
const plateZ = (z0: number, withBox = true) => (x: number, y: number, z: number) => (z === z0 && x >= 4 && x < 16 && y >= 4 && y < 14 ? 1 : withBox && x >= 18 && x < 22 && y >= 2 && y < 6 && z >= 8 && z < 11 ? 2 : 0);
/** A one-voxel-thick plate perpendicular to x at x = x0 (class 1). */
const plateX = (x0: number) => (x: number, y: number, z: number) => (x === x0 && y >= 4 && y < 14 && z >= 2 && z < 9 ? 1 : 0);

async function cli(...args: string[]) {
  return runPatchfed(['evaluate', ...args]);
}

beforeAll(async () => {
  root = await temp.make('patchfed-evaluate-');
  // MSD-like layout: labelsTr/ beside dataset.json, whose label names the output uses.
  labels = path.join(root, 'data', 'labelsTr');
  preds = path.join(root, 'pred');
  await mkdir(labels, { recursive: true });
  await mkdir(preds, { recursive: true });
  await writeFile(
    path.join(root, 'data', 'dataset.json'),
    JSON.stringify({ name: 'Toy', modality: { 0: 'CT' }, labels: { 0: 'background', 1: 'plate', 2: 'box' }, training: [{ image: './imagesTr/a.nii.gz', label: './labelsTr/a.nii.gz' }] }),
  );
  // a: perfect. b: plate shifted by 2 voxels along x (0.8 mm each). c: plate shifted by 1 along z
  // (3 mm) and the box missed. d: label only. e: prediction only.
  await writeNifti(path.join(labels, 'a.nii.gz'), labelMap(plateZ(5)), geometry());
  await writeNifti(path.join(preds, 'a.nii.gz'), labelMap(plateZ(5)), geometry());
  await writeNifti(path.join(labels, 'b.nii.gz'), labelMap(plateX(6), 'int16'), geometry()); // int16 labels are fine
  await writeNifti(path.join(preds, 'b.nii'), labelMap(plateX(8)), geometry()); // .nii pairs with .nii.gz
  await writeNifti(path.join(labels, 'c.nii.gz'), labelMap(plateZ(5)), geometry());
  await writeNifti(path.join(preds, 'c.nii.gz'), labelMap(plateZ(6, false)), geometry());
  await writeNifti(path.join(labels, 'd.nii.gz'), labelMap(plateZ(5)), geometry());
  await writeNifti(path.join(preds, 'e.nii.gz'), labelMap(plateZ(5)), geometry());
});
afterAll(() => temp.cleanup());

describe('patchfed evaluate', () => {
  it('scores every pair in mm along the right axes, reports missing pairs, and writes --json / --csv with stable keys', async () => {
    const json = path.join(root, 'out.json');
    const csv = path.join(root, 'out.csv');
    const r = await cli('--pred', preds, '--labels', labels, '--json', json, '--csv', csv, '--nsd-tolerance', '2');
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: case d has a label but no prediction/);
    expect(r.stderr).toMatch(/warning: case e has a prediction but no label/);
    expect(r.stdout).toMatch(/^evaluated 3 case\(s\): .*classes from .*dataset\.json; NSD tolerance 2 mm/);
    expect(r.stdout).toMatch(/^a +plate +1\.000 +0\.00 +1\.000$/m);
    expect(r.stdout).toMatch(/^b +plate +0\.000 +1\.60 +1\.000$/m); // 2 voxels × 0.8 mm along x, within 2 mm
    expect(r.stdout).toMatch(/^c +plate +0\.000 +3\.00 +0\.000$/m); // 1 voxel × 3 mm along z, beyond 2 mm
    expect(r.stdout).toMatch(/^c +box +0\.000 +inf +0\.000$/m); // missed: MONAI's inf / 0
    expect(r.stdout).toMatch(/^b +box +n\/a +n\/a +n\/a$/m); // absent from both
    expect(r.stdout).toMatch(/^plate +0\.333 \(3\) +1\.53 \(3\) +1\.60 +0 +0\.667 \(3\)$/m);
    expect(r.stdout).toMatch(/^box +0\.500 \(2\) +inf \(2\) +inf +1 +0\.500 \(2\)$/m);
    expect(r.stdout).toMatch(/missing predictions \(label but no prediction, not scored\): d/);
    expect(r.stdout).toMatch(/^conventions \(MONAI\):\n  Dice: undefined .*\n  HD95: .*inf when exactly one is/m);

    const report = JSON.parse(await readFile(json, 'utf8'));
    expect(Object.keys(report)).toEqual(['kind', 'version', 'predDir', 'labelsDir', 'nsdToleranceMm', 'hdPercentile', 'classSource', 'classes', 'conventions', 'cases', 'summary', 'missing']);
    expect(report.kind).toBe('patchfed-evaluation');
    expect(report.classes).toEqual([{ value: 1, name: 'plate' }, { value: 2, name: 'box' }]);
    expect(report.missing).toEqual({ predictions: ['d'], labels: ['e'] });
    expect(report.cases.map((c: { case: string }) => c.case)).toEqual(['a', 'b', 'c']);
    const b = report.cases[1];
    expect(Object.keys(b)).toEqual(['case', 'prediction', 'label', 'shape', 'spacingMm', 'metrics']);
    expect(b.shape).toEqual(DIMS);
    b.spacingMm.forEach((s: number, a: number) => expect(s).toBeCloseTo(SPACING[a]!, 6));
    expect(Object.keys(b.metrics[0])).toEqual(['class', 'name', 'dice', 'hd95', 'nsd', 'predVoxels', 'labelVoxels', 'predSurfaceVoxels', 'labelSurfaceVoxels']);
    expect(b.metrics[0].hd95).toBeCloseTo(1.6, 6);
    expect(b.metrics[1]).toMatchObject({ class: 2, name: 'box', dice: null, hd95: null, nsd: null });
    expect(report.cases[2].metrics[1]).toMatchObject({ dice: 0, hd95: 'inf', nsd: 0, predVoxels: 0, labelVoxels: 48 });
    expect(Object.keys(report.summary)).toEqual(['perClass', 'mean']);
    expect(report.summary.perClass[1].hd95).toEqual({ mean: 'inf', median: 'inf', n: 2, infinite: 1 });
    expect(report.summary.perClass[0].hd95.mean).toBeCloseTo((0 + 1.6 + 3) / 3, 6);

    const rows = (await readFile(csv, 'utf8')).trimEnd().split('\n');
    expect(rows[0]).toBe('case,class,name,dice,hd95_mm,nsd,pred_voxels,label_voxels');
    expect(rows).toHaveLength(1 + 3 * 2);
    expect(rows[4]).toBe('b,2,box,nan,nan,nan,0,0');
    expect(rows[6]).toBe('c,2,box,0,inf,0,0,48');
  }, 60_000);

  it('takes the voxel size in mm from xyzt_units (a file in metres) and finds classes in the files without a dataset.json', async () => {
    const dir = await temp.make('patchfed-evaluate-units-');
    await mkdir(path.join(dir, 'p'));
    await mkdir(path.join(dir, 'l'));
    const metres: [number, number, number] = [0.0008, 0.00125, 0.003];
    await writeNifti(path.join(dir, 'l', 'm.nii.gz'), labelMap(plateX(6)), geometry(metres, [0.04, -0.06, 0.012], 1));
    await writeNifti(path.join(dir, 'p', 'm.nii.gz'), labelMap(plateX(8)), geometry(metres, [0.04, -0.06, 0.012], 1));
    const r = await cli('--pred', path.join(dir, 'p'), '--labels', path.join(dir, 'l'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/classes from label values found in the files; NSD tolerance 1 mm/);
    expect(r.stdout).toMatch(/^m +1 +0\.000 +1\.60 +0\.000$/m);
  }, 60_000);

  it('refuses a label on another grid naming both files, and bad label values naming the file', async () => {
    const dir = await temp.make('patchfed-evaluate-bad-');
    for (const sub of ['p', 'l', 'p2', 'l2']) await mkdir(path.join(dir, sub));
    await writeNifti(path.join(dir, 'l', 'x.nii.gz'), labelMap(plateZ(5)), geometry());
    await writeNifti(path.join(dir, 'p', 'x.nii.gz'), labelMap(plateZ(5)), geometry(SPACING, [41, -60, 12])); // origin 1 mm off
    const shifted = await cli('--pred', path.join(dir, 'p'), '--labels', path.join(dir, 'l'));
    expect(shifted.code).toBe(1);
    expect(shifted.stderr).toMatch(/^patchfed: prediction .*p\/x\.nii\.gz and label .*l\/x\.nii\.gz are on different grids: their affines differ by up to 1\.00 mm/m);

    await writeNifti(path.join(dir, 'l2', 'y.nii.gz'), labelMap(plateZ(5)), geometry());
    await writeNifti(path.join(dir, 'p2', 'y.nii.gz'), labelMap((x) => (x === 3 ? 1.5 : 0), 'float32'), geometry());
    const fractional = await cli('--pred', path.join(dir, 'p2'), '--labels', path.join(dir, 'l2'));
    expect(fractional.code).toBe(1);
    expect(fractional.stderr).toMatch(/^patchfed: .*p2\/y\.nii\.gz: label values must be integers in 0\.\.255, found 1\.5$/m);

    // dataset.json declares 1 (plate) and 2 (box): a 3 in a prediction is refused, naming it.
    await mkdir(path.join(dir, 'p3'));
    await writeNifti(path.join(dir, 'p3', 'y.nii.gz'), labelMap((x) => (x === 3 ? 3 : 0)), geometry());
    const stray = await cli('--pred', path.join(dir, 'p3'), '--labels', path.join(dir, 'l2'), '--dataset', path.join(root, 'data'));
    expect(stray.code).toBe(1);
    expect(stray.stderr).toMatch(/^patchfed: .*p3\/y\.nii\.gz: label values 3 are not among the classes of .*dataset\.json \(1, 2\)$/m);
  }, 60_000);

  it('says what is wrong with the folders and the options', async () => {
    const none = await cli('--pred', path.join(root, 'nope'), '--labels', labels);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^patchfed: prediction folder .*nope does not exist$/m);
    const empty = await temp.make('patchfed-evaluate-empty-');
    const unpaired = await cli('--pred', empty, '--labels', labels);
    expect(unpaired.code).toBe(1);
    expect(unpaired.stderr).toMatch(/no case has both a prediction in .* \(0 NIfTI file\(s\)\) and a label in .* \(4\)/);
    const usage = await cli('--pred', preds);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/required option '--labels <dir>' not specified/);
    const tolerance = await cli('--pred', preds, '--labels', labels, '--nsd-tolerance', 'x');
    expect(tolerance.code).toBe(2);
    expect(tolerance.stderr).toMatch(/--nsd-tolerance must be a number, got 'x'/);
  }, 60_000);
});
