import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNifti, readNiftiHeader, toFloat32 } from '../shared/nifti/index.ts';
import { ALL_DATATYPES, craftFile, sampleData } from './nifti-craft.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nifti-reader-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function put(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, name.endsWith('.gz') ? gzipSync(bytes) : bytes);
  return path;
}

const ARRAY_NAME = {
  uint8: 'Uint8Array', int8: 'Int8Array', int16: 'Int16Array', uint16: 'Uint16Array',
  int32: 'Int32Array', uint32: 'Uint32Array', float32: 'Float32Array', float64: 'Float64Array',
} as const;

describe('readNifti: datatypes and byte orders (hand-crafted NIfTI-1)', () => {
  for (const datatype of ALL_DATATYPES) {
    for (const littleEndian of [true, false]) {
      for (const ext of ['.nii', '.nii.gz']) {
        it(`${datatype} ${littleEndian ? 'LE' : 'BE'} ${ext}`, async () => {
          const values = sampleData(datatype, 2 * 3 * 4);
          const path = await put(`${datatype}-${littleEndian}${ext}`, craftFile({ dim: [3, 2, 3, 4], datatype, littleEndian, pixdim: [1, 0.5, 2, 3] }, values));
          const vol = await readNifti(path);
          expect(vol.data.constructor.name).toBe(ARRAY_NAME[datatype]);
          expect(vol.datatype).toBe(datatype);
          expect(vol.sourceDatatype).toBe(datatype);
          expect(vol.scaling.applied).toBe(false);
          expect(vol.dims).toEqual([2, 3, 4]);
          const expected = datatype === 'float32' ? values.map(Math.fround) : values;
          expect(Array.from(vol.data)).toEqual(expected);
          expect(vol.header.littleEndian).toBe(littleEndian);
          expect(vol.geometry.spacing).toEqual([0.5, 2, 3]);
          expect(vol.geometry.affineSource).toBe('pixdim');
        });
      }
    }
  }
});

describe('readNifti: header variants', () => {
  it('reads a NIfTI-2 file in both byte orders, with its sform', async () => {
    const srow: [number[], number[], number[]] = [[-1.5, 0, 0, 90.25], [0, 1.5, 0, -126.5], [0, 0, 2, -72]];
    for (const littleEndian of [true, false]) {
      const values = [1.5, -2.25, 1e200, 0, 7, 8];
      const path = await put(`v2-${littleEndian}.nii`, craftFile({ version: 2, littleEndian, dim: [3, 1, 2, 3], datatype: 'float64', sformCode: 2, srow, pixdim: [1, 1.5, 1.5, 2] }, values));
      const vol = await readNifti(path);
      expect(vol.header.version).toBe(2);
      expect(vol.header.voxOffset).toBe(544);
      expect(vol.dims).toEqual([1, 2, 3]);
      expect(Array.from(vol.data)).toEqual(values);
      expect(vol.geometry.affine).toEqual([...srow, [0, 0, 0, 1]]);
      expect(vol.geometry.affineSource).toBe('sform');
      expect(vol.geometry.sformCode).toBe(2);
    }
  });

  it('reads a file with an extension and vox_offset beyond 352', async () => {
    const extension = { code: 6, data: new TextEncoder().encode('a comment extension of some length') };
    const values = [10, 20, 30, 40, 50, 60, 70, 80];
    const path = await put('ext.nii.gz', craftFile({ dim: [3, 2, 2, 2], datatype: 'int16', extension, voxOffset: 416 }, values));
    const vol = await readNifti(path);
    expect(vol.header.voxOffset).toBe(416);
    expect(Array.from(vol.data)).toEqual(values);
  });

  it('reads a legacy vox_offset of 0 as data right after the header', async () => {
    const path = join(dir, 'off0.nii');
    const bytes = craftFile({ dim: [3, 2, 1, 1], datatype: 'uint8' }, [5, 6]);
    new DataView(bytes.buffer).setFloat32(108, 0, true);
    await writeFile(path, bytes);
    const vol = await readNifti(path);
    expect(vol.header.voxOffset).toBe(352);
    expect(Array.from(vol.data)).toEqual([5, 6]);
  });

  it('applies scl_slope/scl_inter to int16 and returns float32', async () => {
    const values = [-100, 0, 1, 2, 300, 32767];
    const path = await put('scaled.nii', craftFile({ dim: [3, 3, 2, 1], datatype: 'int16', slope: 0.5, inter: -10, littleEndian: false }, values));
    const vol = await readNifti(path);
    expect(vol.data).toBeInstanceOf(Float32Array);
    expect(vol.datatype).toBe('float32');
    expect(vol.sourceDatatype).toBe('int16');
    expect(vol.scaling).toEqual({ slope: 0.5, inter: -10, applied: true });
    expect(Array.from(vol.data)).toEqual([-60, -10, -9.5, -9, 140, 16373.5]);
  });

  it('leaves data unscaled when slope is 0, NaN, or the identity', async () => {
    for (const [slope, inter] of [[0, 5], [NaN, 3], [1, 0]]) {
      const path = await put(`noscale-${slope}.nii`, craftFile({ dim: [3, 2, 1, 1], datatype: 'int16', slope, inter }, [7, -7]));
      const vol = await readNifti(path);
      expect(vol.data).toBeInstanceOf(Int16Array);
      expect(vol.scaling.applied).toBe(false);
      expect(Array.from(vol.data)).toEqual([7, -7]);
    }
  });

  it('reads a 4D multi-modal volume with channel as the 4th dimension', async () => {
    const [X, Y, Z, C] = [2, 3, 2, 4];
    const values = Array.from({ length: X * Y * Z * C }, (_, i) => 1000 * Math.floor(i / (X * Y * Z)) + (i % (X * Y * Z)));
    const path = await put('4d.nii.gz', craftFile({ dim: [4, X, Y, Z, C], datatype: 'float32', littleEndian: false }, values));
    const vol = await readNifti(path);
    expect(vol.dims).toEqual([X, Y, Z, C]);
    expect(vol.geometry.shape).toEqual([X, Y, Z]);
    // voxel (x=1, y=2, z=1) of channel 3 = index x + X*(y + Y*(z + Z*c))
    expect(vol.data[1 + X * (2 + Y * (1 + Z * 3))]).toBe(3000 + 1 + X * (2 + Y * 1));
  });

  it('drops a trailing channel dimension of 1 and pads 2D images to 3D', async () => {
    const p4 = await put('4d1.nii', craftFile({ dim: [4, 2, 2, 2, 1], datatype: 'uint8' }, sampleData('uint8', 8)));
    expect((await readNifti(p4)).dims).toEqual([2, 2, 2]);
    const p2 = await put('2d.nii', craftFile({ dim: [2, 3, 2, 7, 7], datatype: 'uint8' }, sampleData('uint8', 6)));
    const vol = await readNifti(p2);
    expect(vol.dims).toEqual([3, 2, 1]);
    expect(vol.data.length).toBe(6);
  });

  it('detects gzip from content, not from the file name', async () => {
    const bytes = craftFile({ dim: [3, 2, 1, 1], datatype: 'uint16' }, [1, 65535]);
    const plainNamedGz = join(dir, 'plain.nii.gz');
    await writeFile(plainNamedGz, bytes);
    const gzNamedPlain = join(dir, 'zipped.nii');
    await writeFile(gzNamedPlain, gzipSync(bytes));
    expect(Array.from((await readNifti(plainNamedGz)).data)).toEqual([1, 65535]);
    expect(Array.from((await readNifti(gzNamedPlain)).data)).toEqual([1, 65535]);
  });
});

describe('readNiftiHeader', () => {
  it('reads only the head of a .nii.gz: works on a file cut off mid-data, where readNifti fails', async () => {
    // Incompressible voxels so that cutting the gzip leaves the header decodable but the data incomplete.
    let seed = 12345;
    const values = Array.from({ length: 16 * 16 * 16 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) & 0xff);
    const full = gzipSync(craftFile({ dim: [3, 16, 16, 16], datatype: 'uint8', pixdim: [1, 2, 2, 2] }, values));
    const path = join(dir, 'cut.nii.gz');
    await writeFile(path, full.subarray(0, Math.floor(full.length / 2)));
    const header = await readNiftiHeader(path);
    expect(header.dims).toEqual([16, 16, 16]);
    expect(header.datatype).toBe('uint8');
    expect(header.dataBytes).toBe(4096);
    expect(header.geometry.spacing).toEqual([2, 2, 2]);
    await expect(readNifti(path)).rejects.toThrow(/truncated/);
  });

  it('validates the header like readNifti (maxVoxels)', async () => {
    const path = await put('hdr-max.nii', craftFile({ dim: [3, 10, 10, 10], datatype: 'uint8' }, sampleData('uint8', 1000)));
    expect((await readNiftiHeader(path)).voxelCount).toBe(1000);
    await expect(readNiftiHeader(path, { maxVoxels: 999 })).rejects.toMatchObject({ code: 'NIFTI_TOO_LARGE' });
  });
});

describe('toFloat32', () => {
  it('converts integer volumes and passes float32 through without copying', async () => {
    const path = await put('tf.nii', craftFile({ dim: [3, 3, 1, 1], datatype: 'int32' }, [-5, 0, 2147483647]));
    const vol = await readNifti(path);
    const f = toFloat32(vol);
    expect(f).toBeInstanceOf(Float32Array);
    expect(Array.from(f)).toEqual([-5, 0, Math.fround(2147483647)]);
    const asFloat = { data: f };
    expect(toFloat32(asFloat)).toBe(f);
  });
});
