import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Mat4 } from '../shared/geometry.ts';
import { affineFromHeaderFields, affineToQform, float32Quaternion, quaternionToRotation, readNifti } from '../shared/nifti/index.ts';
import { craftFile, type CraftOptions } from './nifti-craft.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nifti-affine-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function geometryOf(o: Partial<Omit<CraftOptions, 'datatype'>>) {
  const path = join(dir, `a${n++}.nii`);
  await writeFile(path, craftFile({ dim: [3, 2, 2, 2], datatype: 'uint8', ...o }, new Array(8).fill(0)));
  return (await readNifti(path)).geometry;
}

function expectMatClose(actual: number[][], expected: number[][], tol = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, i) => row.forEach((v, j) => expect(Math.abs(v - expected[i]![j]!), `[${i}][${j}] ${v} vs ${expected[i]![j]}`).toBeLessThanOrEqual(tol)));
}

describe("header affine follows nibabel's rule", () => {
  it('qform only: 90° about z, qfac −1 from pixdim[0]', async () => {
    const g = await geometryOf({ qformCode: 1, quatern: [0, 0, Math.SQRT1_2], qoffset: [10, 20, 30], pixdim: [-1, 2, 3, 4] });
    expect(g.affineSource).toBe('qform');
    expect(g.qfac).toBe(-1);
    // R = [[0,-1,0],[1,0,0],[0,0,1]]; affine = R·diag(2, 3, 4·qfac) + t
    expectMatClose(g.affine, [[0, -3, 0, 10], [2, 0, 0, 20], [0, 0, -4, 30], [0, 0, 0, 1]]);
  });

  it('qform only: generic quaternion b, c, d (reference from nibabel quat2mat formulas)', async () => {
    const g = await geometryOf({ qformCode: 2, quatern: [0.1, 0.2, 0.3], qoffset: [-90, -120, -60], pixdim: [-1, 1.5, 2, 2.5] });
    expect(g.affineSource).toBe('qform');
    expectMatClose(g.affine, [
      [1.1099999999999999, -1.0328342194594844, -1.0773618495495705, -90],
      [0.8946256645946133, 1.6, 0.16368092477478524, -120],
      [-0.46641710972974226, 0.6109447398198282, -2.25, -60],
      [0, 0, 0, 1],
    ]);
  });

  it('qform only: 180° about x with pixdim[0] = 0 (repaired to qfac 1)', async () => {
    const g = await geometryOf({ qformCode: 1, quatern: [1, 0, 0], pixdim: [0, 2, 2, 2] });
    expect(g.qfac).toBe(1);
    expectMatClose(g.affine, [[2, 0, 0, 0], [0, -2, 0, 0], [0, 0, -2, 0], [0, 0, 0, 1]]);
  });

  it('sform only', async () => {
    const srow: [number[], number[], number[]] = [[-0.5, 0.1, 0, 80], [0.2, 0.75, 0, -100], [0, 0, 3, -40]];
    const g = await geometryOf({ sformCode: 4, srow, pixdim: [1, 9, 9, 9] });
    expect(g.affineSource).toBe('sform');
    expectMatClose(g.affine, [...srow, [0, 0, 0, 1]]);
  });

  it('both: sform wins even when qform_code is higher', async () => {
    const srow: [number[], number[], number[]] = [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3]];
    const g = await geometryOf({ sformCode: 1, qformCode: 2, srow, quatern: [1, 0, 0], pixdim: [1, 5, 5, 5] });
    expect(g.affineSource).toBe('sform');
    expectMatClose(g.affine, [...srow, [0, 0, 0, 1]]);
  });

  it('sform_code 0 with a filled srow: qform is used', async () => {
    const g = await geometryOf({ sformCode: 0, qformCode: 1, srow: [[7, 7, 7, 7], [7, 7, 7, 7], [7, 7, 7, 7]], pixdim: [1, 2, 3, 4] });
    expect(g.affineSource).toBe('qform');
    expectMatClose(g.affine, [[2, 0, 0, 0], [0, 3, 0, 0], [0, 0, 4, 0], [0, 0, 0, 1]]);
  });

  it('neither: diagonal of |pixdim|, with 0 read as 1', async () => {
    const g = await geometryOf({ pixdim: [1, -2, 3, 0], quatern: [1, 0, 0], srow: [[7, 7, 7, 7], [7, 7, 7, 7], [7, 7, 7, 7]] });
    expect(g.affineSource).toBe('pixdim');
    expect(g.spacing).toEqual([2, 3, 1]);
    expectMatClose(g.affine, [[2, 0, 0, 0], [0, 3, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]);
  });

  it('spacing of dimensions beyond dim[0] is 1', async () => {
    const path = join(dir, 'flat.nii');
    await writeFile(path, craftFile({ dim: [2, 2, 2], datatype: 'uint8', pixdim: [1, 0.5, 0.25, 7] }, [1, 2, 3, 4]));
    const g = (await readNifti(path)).geometry;
    expect(g.spacing).toEqual([0.5, 0.25, 1]);
  });
});

describe('affineToQform (nibabel set_qform / mat2quat)', () => {
  it('improper rotation: qfac −1 and the quaternion of the proper part', () => {
    const q = affineToQform([[0, -3, 0, 10], [2, 0, 0, 20], [0, 0, -4, 30], [0, 0, 0, 1]]);
    expect(q.qfac).toBe(-1);
    expectMatClose([q.zooms], [[2, 3, 4]], 1e-12);
    expectMatClose([q.quatern], [[0, 0, Math.SQRT1_2]], 1e-12);
    expect(q.qoffset).toEqual([10, 20, 30]);
  });

  it('sheared affine: nearest orthogonal rotation, matching nibabel numbers', () => {
    const q = affineToQform([[-0.9, 0.1, 0.05, 90], [0.12, 1.1, -0.3, -126], [0.02, 0.35, 1.9, -72], [0, 0, 0, 1]]);
    expect(q.qfac).toBe(-1);
    expectMatClose([q.zooms], [[0.9081850031794183, 1.158663022625647, 1.9241881404893857]], 1e-12);
    expectMatClose([q.quatern], [[-0.05446743969564716, -0.9918160166429519, -0.11515750968797327]], 1e-9);
  });

  it('round trip affine → qform → affine for rotations of every kind, proper and improper', () => {
    let seed = 99;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5;
    const rotations = [
      quaternionToRotation(0, 0, 0),
      quaternionToRotation(1, 0, 0), // 180° turns: trace −1, the hard case for quaternion extraction
      quaternionToRotation(0, 1, 0),
      quaternionToRotation(0, 0, 1),
      quaternionToRotation(Math.SQRT1_2, Math.SQRT1_2, 0),
    ];
    for (let k = 0; k < 20; k++) {
      const [a, b, c, d] = [rnd(), rnd(), rnd(), rnd()];
      const norm = Math.hypot(a, b, c, d);
      const s = a < 0 ? -1 : 1;
      rotations.push(quaternionToRotation((s * b) / norm, (s * c) / norm, (s * d) / norm));
    }
    let checked = 0;
    for (const r of rotations) {
      for (const flip of [1, -1]) {
        const zooms = [0.7, 1.3, 2.9];
        const affine = [0, 1, 2].map((i) => [...[0, 1, 2].map((j) => r[i]![j]! * zooms[j]! * (j === 2 ? flip : 1)), [5, -6, 7][i]!]);
        affine.push([0, 0, 0, 1]);
        const q = affineToQform(affine as Mat4);
        expect(q.qfac).toBe(flip);
        const back = affineFromHeaderFields({
          dim0: 3,
          pixdim: [q.qfac, ...q.zooms],
          qformCode: 1,
          sformCode: 0,
          quatern: q.quatern,
          qoffset: q.qoffset,
          srow: [[], [], []],
        });
        expectMatClose(back.affine, affine, 1e-9);
        checked++;
      }
    }
    expect(checked).toBe(50);
  });

  it('float32 storage keeps the rotation accurate, also near 180° where a ≈ 0', () => {
    let seed = 5;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5;
    const cases: [number, number, number][] = [[1, 0, 0], [Math.SQRT1_2, Math.SQRT1_2, 0], [0.6, 0, 0.8], [0, 0, 0]];
    for (let k = 0; k < 30; k++) {
      const v = [rnd(), rnd(), rnd()];
      const norm = Math.hypot(...v);
      cases.push(v.map((x) => x / norm) as [number, number, number]); // a = 0: a 180° turn about v
      cases.push(v.map((x) => (0.5 * x) / norm) as [number, number, number]);
    }
    let worstPlain = 0;
    for (const q of cases) {
      const stored = float32Quaternion(q);
      expect(stored.every((x) => Math.fround(x) === x)).toBe(true);
      const exact = quaternionToRotation(...q);
      const fromStored = quaternionToRotation(...stored);
      const fromPlain = quaternionToRotation(...(q.map(Math.fround) as [number, number, number]));
      for (let i = 0; i < 3; i++) {
        for (let j = 0; j < 3; j++) {
          expect(Math.abs(fromStored[i]![j]! - exact[i]![j]!)).toBeLessThan(1e-6);
          worstPlain = Math.max(worstPlain, Math.abs(fromPlain[i]![j]! - exact[i]![j]!));
        }
      }
    }
    // Plain rounding is measurably worse for some of these; that is why the nudging exists.
    expect(worstPlain).toBeGreaterThan(1e-5);
  });

  it('refuses a singular affine', () => {
    expect(() => affineToQform([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])).toThrow(/column 1 has norm 0/);
    expect(() => affineToQform([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])).toThrow(/singular/);
  });
});
