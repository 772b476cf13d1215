import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import type { Geometry, Mat4 } from '../shared/geometry.ts';
import { affineFromHeaderFields, readNifti, writeNifti } from '../shared/nifti/index.ts';
import type { VoxelArray } from '../shared/volume.ts';
import { ALL_DATATYPES, craftFile, sampleData } from './nifti-craft.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nifti-writer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function expectMatClose(actual: number[][], expected: number[][], tol = 1e-5): void {
  actual.forEach((row, i) => row.forEach((v, j) => expect(Math.abs(v - expected[i]![j]!), `[${i}][${j}] ${v} vs ${expected[i]![j]}`).toBeLessThanOrEqual(tol)));
}

/** Oblique, left-handed source geometry: 30° about z, then x flipped, anisotropic voxels. */
const OBLIQUE: Mat4 = (() => {
  const c = Math.cos(Math.PI / 6);
  const s = Math.sin(Math.PI / 6);
  const z = [0.8, 1.2, 2.5] as const;
  return [
    [-c * z[0], -s * z[1], 0, 91.5],
    [-s * z[0], c * z[1], 0, -125.25],
    [0, 0, z[2], -70],
    [0, 0, 0, 1],
  ];
})();

function geometry(shape: [number, number, number], overrides: Partial<Geometry> = {}): Geometry {
  return {
    shape,
    spacing: [0.8, 1.2, 2.5],
    qformCode: 0,
    sformCode: 2,
    affine: OBLIQUE,
    affineSource: 'sform',
    qfac: -1,
    xyztUnits: 10,
    ...overrides,
  };
}

/** The affine a reader gets from the qform fields alone, to check qform and sform agree. */
function qformAffineOf(header: Awaited<ReturnType<typeof readNifti>>['header']): Mat4 {
  return affineFromHeaderFields({ ...header, dim0: header.dim[0]!, sformCode: 0 }).affine;
}

describe('read → write → read round trip', () => {
  for (const datatype of ALL_DATATYPES) {
    for (const endianness of ['little', 'big'] as const) {
      for (const dims of [[3, 2, 4], [2, 3, 2, 3]]) {
        const ext = dims.length === 4 ? '.nii' : '.nii.gz';
        it(`${datatype} ${endianness} ${dims.length}D ${ext}`, async () => {
          const count = dims.reduce((a, b) => a * b, 1);
          const source = join(dir, `src-${datatype}-${endianness}-${dims.length}${ext}`);
          await writeFile(source, craftFile({
            dim: [dims.length, ...dims], datatype, littleEndian: endianness === 'little',
            sformCode: 2, srow: [OBLIQUE[0], OBLIQUE[1], OBLIQUE[2]], pixdim: [1, 0.8, 1.2, 2.5],
          }, sampleData(datatype, count)));
          const first = await readNifti(source);

          const copy = join(dir, `copy-${datatype}-${endianness}-${dims.length}${ext}`);
          await writeNifti(copy, first, first.geometry, { endianness, description: `copy of ${datatype}` });
          const second = await readNifti(copy);

          expect(second.data.constructor).toBe(first.data.constructor);
          expect(Array.from(second.data)).toEqual(Array.from(first.data));
          expect(second.dims).toEqual(dims);
          expect(second.header.littleEndian).toBe(endianness === 'little');
          expect(second.header.datatype).toBe(datatype);
          expect(second.header.description).toBe(`copy of ${datatype}`);
          expectMatClose(second.geometry.affine, first.geometry.affine);
          expectMatClose(qformAffineOf(second.header), first.geometry.affine);
        });
      }
    }
  }
});

describe('writeNifti header content', () => {
  it('labels as 3D uint8: datatype 2, bitpix 8, vox_offset 352, slope 1, inter 0 (checked on raw bytes)', async () => {
    const path = join(dir, 'labels.nii.gz');
    const data = new Uint8Array([0, 1, 2, 3, 0, 1, 2, 3]);
    await writeNifti(path, { data, dims: [2, 2, 2], datatype: 'uint8' }, geometry([2, 2, 2]));
    const bytes = gunzipSync(await readFile(path));
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(bytes.length).toBe(352 + 8);
    expect(v.getInt32(0, true)).toBe(348);
    expect(v.getInt16(40, true)).toBe(3);
    expect([v.getInt16(42, true), v.getInt16(44, true), v.getInt16(46, true)]).toEqual([2, 2, 2]);
    expect(v.getInt16(70, true)).toBe(2);
    expect(v.getInt16(72, true)).toBe(8);
    expect(v.getFloat32(108, true)).toBe(352);
    expect(v.getFloat32(112, true)).toBe(1);
    expect(v.getFloat32(116, true)).toBe(0);
    expect(String.fromCharCode(...bytes.subarray(344, 348))).toBe('n+1\0');
    expect(Array.from(bytes.subarray(352))).toEqual(Array.from(data));
  });

  it('writes big-endian headers and voxels when asked', async () => {
    const path = join(dir, 'be.nii');
    await writeNifti(path, { data: new Int16Array([0x0102]), dims: [1, 1, 1], datatype: 'int16' }, geometry([1, 1, 1]), { endianness: 'big' });
    const bytes = await readFile(path);
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0, 0, 0x01, 0x5c]);
    expect(Array.from(bytes.subarray(352))).toEqual([1, 2]);
  });

  it('affine in both sform and qform, pixdim = sform column norms, codes and units from the source', async () => {
    const path = join(dir, 'geom.nii');
    await writeNifti(path, { data: new Float32Array(8), dims: [2, 2, 2], datatype: 'float32' }, geometry([2, 2, 2], { qformCode: 3, sformCode: 4 }));
    const h = (await readNifti(path)).header;
    expect(h.qformCode).toBe(3);
    expect(h.sformCode).toBe(4);
    expect(h.xyztUnits).toBe(10);
    expect(h.pixdim[0]).toBe(-1); // x flip makes the rotation improper
    expectMatClose([h.pixdim.slice(1, 4)], [[0.8, 1.2, 2.5]]);
    expectMatClose(h.srow, OBLIQUE.slice(0, 3));
    expectMatClose(qformAffineOf(h), OBLIQUE);
  });

  it('codes default to 1 and units to mm when the source had none', async () => {
    const path = join(dir, 'nocodes.nii');
    const g = geometry([2, 2, 2], { qformCode: 0, sformCode: 0, xyztUnits: 0, affine: [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]] });
    await writeNifti(path, { data: new Uint8Array(8), dims: [2, 2, 2], datatype: 'uint8' }, g);
    const h = (await readNifti(path)).header;
    expect([h.qformCode, h.sformCode, h.xyztUnits]).toEqual([1, 1, 2]);
    expect(h.pixdim[0]).toBe(1);
  });

  it('scaled source voxels are written as float32 with identity scaling', async () => {
    const source = join(dir, 'scaled-src.nii');
    await writeFile(source, craftFile({ dim: [3, 2, 1, 1], datatype: 'int16', slope: 2, inter: 1 }, [3, -4]));
    const vol = await readNifti(source);
    const out = join(dir, 'scaled-out.nii.gz');
    await writeNifti(out, vol, vol.geometry);
    const back = await readNifti(out);
    expect(back.header.datatype).toBe('float32');
    expect(back.scaling.applied).toBe(false);
    expect(Array.from(back.data)).toEqual([7, -7]);
  });

  it('truncates long descriptions to the 80-byte field', async () => {
    const path = join(dir, 'descr.nii');
    await writeNifti(path, { data: new Uint8Array(1), dims: [1, 1, 1], datatype: 'uint8' }, geometry([1, 1, 1]), { description: 'x'.repeat(200) });
    const h = (await readNifti(path)).header;
    expect(h.description).toBe('x'.repeat(79));
    expect(h.srow[0][0]).toBeCloseTo(OBLIQUE[0][0], 5); // the aux_file/qform fields after descrip are intact
  });
});

describe('writeNifti is atomic and validates its input', () => {
  it('overwrites an existing file and leaves no temp files behind', async () => {
    const sub = join(dir, 'atomic');
    await mkdir(sub);
    const path = join(sub, 'vol.nii.gz');
    await writeFile(path, 'old content');
    await writeNifti(path, { data: new Uint16Array([9, 8]), dims: [2, 1, 1], datatype: 'uint16' }, geometry([2, 1, 1]));
    expect(await readdir(sub)).toEqual(['vol.nii.gz']);
    expect(Array.from((await readNifti(path)).data)).toEqual([9, 8]);
  });

  it('a failed write leaves neither target nor temp file', async () => {
    const path = join(dir, 'missing-dir', 'vol.nii');
    await expect(writeNifti(path, { data: new Uint8Array(1), dims: [1, 1, 1], datatype: 'uint8' }, geometry([1, 1, 1])))
      .rejects.toMatchObject({ code: 'NIFTI_WRITE', subject: path });
    const listing = await readdir(dir);
    expect(listing.some((f) => f.includes('.tmp'))).toBe(false);
  });

  const bad: [string, string, { data: VoxelArray; dims: number[]; datatype: 'uint8' | 'int16' }, RegExp][] = [
    ['wrong extension', 'x.img', { data: new Uint8Array(1), dims: [1, 1, 1], datatype: 'uint8' }, /must end in \.nii or \.nii\.gz/],
    ['length mismatch', 'x.nii', { data: new Uint8Array(7), dims: [2, 2, 2], datatype: 'uint8' }, /8 voxels but data has 7/],
    ['array type mismatch', 'x.nii', { data: new Uint8Array(8), dims: [2, 2, 2], datatype: 'int16' }, /Uint8Array, not the array type of int16/],
    ['dimension too large for NIfTI-1', 'x.nii', { data: new Uint8Array(40000), dims: [40000, 1, 1], datatype: 'uint8' }, /not an integer in 1\.\.32767/],
    ['2D dims', 'x.nii', { data: new Uint8Array(4), dims: [2, 2], datatype: 'uint8' }, /must be \[X, Y, Z\] or \[X, Y, Z, C\]/],
  ];
  for (const [name, file, image, reason] of bad) {
    it(`refuses ${name}`, async () => {
      const path = join(dir, file);
      const err = await writeNifti(path, image, geometry([1, 1, 1])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PatchFedError);
      expect((err as PatchFedError).message).toContain(path);
      expect((err as PatchFedError).message).toMatch(reason);
    });
  }

  it('refuses a gzip level outside 0..9, and level 0 still round-trips', async () => {
    const image = { data: new Int8Array([-1, 2]), dims: [2, 1, 1], datatype: 'int8' as const };
    await expect(writeNifti(join(dir, 'lvl.nii.gz'), image, geometry([2, 1, 1]), { gzipLevel: 12 })).rejects.toThrow(/gzipLevel 12/);
    await writeNifti(join(dir, 'lvl0.nii.gz'), image, geometry([2, 1, 1]), { gzipLevel: 0 });
    expect(Array.from((await readNifti(join(dir, 'lvl0.nii.gz'))).data)).toEqual([-1, 2]);
  });

  it('refuses a singular source affine', async () => {
    const g = geometry([1, 1, 1], { affine: [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] });
    await expect(writeNifti(join(dir, 'sing.nii'), { data: new Uint8Array(1), dims: [1, 1, 1], datatype: 'uint8' }, g))
      .rejects.toThrow(/column 1 has norm 0/);
  });
});
