import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { inspectNiftiFile, readNifti, readNiftiHeader } from '../shared/nifti/index.ts';
import type { NiftiReadOptions } from '../shared/nifti/index.ts';
import { concatBytes, craftFile, craftHeader, sampleData, type CraftOptions } from './nifti-craft.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nifti-hostile-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function put(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** The read is refused with a PatchFedError of `code` that names the file and matches `reason`. */
async function expectRefused(path: string, code: string, reason: RegExp, opts?: NiftiReadOptions): Promise<void> {
  let caught: unknown;
  try {
    await readNifti(path, opts);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PatchFedError);
  const err = caught as PatchFedError;
  expect(err.code).toBe(code);
  expect(err.subject).toBe(path);
  expect(err.message).toContain(path);
  expect(err.message).toMatch(reason);
}

const base: CraftOptions & { datatype: 'int16' } = { dim: [3, 4, 4, 4], datatype: 'int16' };
const good = () => craftFile(base, sampleData('int16', 64));

/** Incompressible 512 KiB volume: gunzip delivers it in many chunks, long before the gzip trailer. */
function bigNoise(): Uint8Array {
  let seed = 3;
  const values = Array.from({ length: 64 * 64 * 128 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) & 0xff);
  return craftFile({ dim: [3, 64, 64, 128], datatype: 'uint8' }, values);
}

describe('hostile and broken NIfTI files are refused with the file and the reason', () => {
  it('truncated gzip', async () => {
    const gz = gzipSync(good());
    const path = await put('trunc.nii.gz', gz.subarray(0, gz.length - 30));
    await expectRefused(path, 'NIFTI_CORRUPT_GZIP', /gzip stream is truncated/);
  });

  it('gzip cut inside its 8-byte trailer (all voxels present, CRC missing)', async () => {
    const gz = gzipSync(bigNoise());
    const path = await put('trailer.nii.gz', gz.subarray(0, gz.length - 3));
    await expectRefused(path, 'NIFTI_CORRUPT_GZIP', /truncated/);
  });

  it('corrupt gzip (CRC mismatch), found although all voxels arrived first', async () => {
    const gz = Buffer.from(gzipSync(bigNoise()));
    gz[gz.length - 6]! ^= 0xff; // inside the CRC32 of the trailer
    const path = await put('crc.nii.gz', gz);
    await expectRefused(path, 'NIFTI_CORRUPT_GZIP', /corrupt/);
  });

  it('wrong magic', async () => {
    const bytes = good();
    bytes.set([0x78, 0x79, 0x7a, 0x00], 344);
    await expectRefused(await put('magic.nii', bytes), 'NIFTI_BAD_MAGIC', /wrong magic 'xyz\\x00' for NIfTI-1/);
  });

  it('wrong NIfTI-2 magic tail', async () => {
    const path = await put('magic2.nii', craftFile({ ...base, version: 2, magic: [0x6e, 0x2b, 0x32, 0, 0, 0, 0, 0] }, sampleData('int16', 64)));
    await expectRefused(path, 'NIFTI_BAD_MAGIC', /NIfTI-2/);
  });

  it('header/image pair magic (ni1)', async () => {
    const path = await put('pair.nii', craftFile({ ...base, magic: [0x6e, 0x69, 0x31, 0] }, sampleData('int16', 64)));
    await expectRefused(path, 'NIFTI_UNSUPPORTED', /separate \.img file/);
  });

  it('sizeof_hdr wrong', async () => {
    const path = await put('sizeof.nii', craftFile({ ...base, sizeofHdr: 349 }, sampleData('int16', 64)));
    await expectRefused(path, 'NIFTI_BAD_HEADER', /sizeof_hdr is 349 .*expected 348 \(NIfTI-1\) or 540 \(NIfTI-2\)/);
  });

  it('file shorter than the header', async () => {
    await expectRefused(await put('short-hdr.nii', good().subarray(0, 200)), 'NIFTI_TRUNCATED', /ends after 200 bytes, inside the 348-byte/);
    await expectRefused(await put('tiny.nii', new Uint8Array([1, 2])), 'NIFTI_TRUNCATED', /too short/);
    await expectRefused(await put('empty.nii', new Uint8Array(0)), 'NIFTI_TRUNCATED', /too short/);
  });

  for (const dim0 of [0, 8, -1]) {
    it(`dim[0] = ${dim0}`, async () => {
      const path = await put(`dim0-${dim0}.nii`, craftFile({ ...base, dim: [dim0, 4, 4, 4] }, sampleData('int16', 64)));
      await expectRefused(path, 'NIFTI_BAD_HEADER', new RegExp(`dim\\[0\\] is ${dim0}; it must be between 1 and 7`));
    });
  }

  for (const bad of [0, -3]) {
    it(`dim[2] = ${bad}`, async () => {
      const path = await put(`dim2-${bad}.nii`, craftFile({ ...base, dim: [3, 4, bad, 4] }, sampleData('int16', 64)));
      await expectRefused(path, 'NIFTI_BAD_HEADER', new RegExp(`dim\\[2\\] is ${bad}; every dimension must be at least 1`));
    });
  }

  it('dims whose product exceeds the voxel maximum (NIfTI-1 int16 dims)', async () => {
    const path = await put('huge1.nii', craftHeader({ dim: [4, 32767, 32767, 32767, 32767], datatype: 'uint8' }));
    await expectRefused(path, 'NIFTI_TOO_LARGE', /32767×32767×32767×32767 exceed the maximum of 1500000000 voxels/);
  });

  it('dims whose product would overflow (NIfTI-2 int64 dims) are refused, also header-only', async () => {
    const path = await put('huge2.nii', craftHeader({ version: 2, dim: [3, 2 ** 62, 2 ** 62, 4], datatype: 'uint8' }));
    await expectRefused(path, 'NIFTI_TOO_LARGE', /exceed the maximum/);
    await expect(readNiftiHeader(path)).rejects.toMatchObject({ code: 'NIFTI_TOO_LARGE', subject: path });
  });

  it('dims beyond a configured maxVoxels', async () => {
    await expectRefused(await put('max.nii', good()), 'NIFTI_TOO_LARGE', /maximum of 63 voxels/, { maxVoxels: 63 });
  });

  it('data shorter than the header promises (.nii)', async () => {
    const bytes = good();
    const path = await put('short.nii', bytes.subarray(0, bytes.length - 1));
    await expectRefused(path, 'NIFTI_TRUNCATED', /shorter than the header promises .*needs 128 bytes .*only 127 present/);
  });

  it('data shorter than the header promises (intact .nii.gz)', async () => {
    const bytes = good();
    const path = await put('short.nii.gz', gzipSync(bytes.subarray(0, bytes.length - 10)));
    await expectRefused(path, 'NIFTI_TRUNCATED', /only 118 present/);
  });

  it('a tiny .nii.gz promising a gigabyte is refused before allocating it', async () => {
    const header = craftHeader({ dim: [3, 1000, 1000, 1000], datatype: 'uint8' });
    const path = await put('bomb-claim.nii.gz', gzipSync(concatBytes(header, new Uint8Array(1000))));
    await expectRefused(path, 'NIFTI_TRUNCATED', /cannot hold that many/);
  });

  it('a tiny .nii promising a gigabyte is refused from its file size', async () => {
    const path = await put('claim.nii', craftHeader({ dim: [3, 1000, 1000, 1000], datatype: 'uint8' }));
    await expectRefused(path, 'NIFTI_TRUNCATED', /needs 1000000000 bytes/);
  });

  for (const [code, name] of [[1024, 'int64'], [128, 'rgb24'], [32, 'complex64'], [9999, '']] as const) {
    it(`unsupported datatype ${code}`, async () => {
      const path = await put(`dt-${code}.nii`, concatBytes(craftHeader({ ...base, datatype: code }), new Uint8Array(1024)));
      const reason = name ? `unsupported datatype ${code} \\(${name}\\)` : `unsupported datatype ${code}$`;
      await expectRefused(path, 'NIFTI_UNSUPPORTED', new RegExp(reason));
    });
  }

  it('NaN in a float32 image, naming the first voxel', async () => {
    const values = sampleData('float32', 64);
    values[1 + 4 * (2 + 4 * 3)] = NaN;
    values[63] = NaN;
    const path = await put('nan.nii.gz', gzipSync(craftFile({ ...base, datatype: 'float32' }, values)));
    await expectRefused(path, 'NIFTI_NON_FINITE', /2 float32 voxels are NaN or Inf \(first at voxel \(1, 2, 3\), value NaN\)/);
  });

  it('Inf in a big-endian float64 image', async () => {
    const values = new Array(64).fill(1);
    values[5] = -Infinity;
    const path = await put('inf.nii', craftFile({ ...base, datatype: 'float64', littleEndian: false }, values));
    await expectRefused(path, 'NIFTI_NON_FINITE', /value -Infinity/);
  });

  it('NaN in a float label map is refused too', async () => {
    const values = [0, 1, 2, NaN, 1, 0, 0, 0];
    const path = await put('labels-nan.nii', craftFile({ dim: [3, 2, 2, 2], datatype: 'float32' }, values));
    await expectRefused(path, 'NIFTI_NON_FINITE', /1 float32 voxels/);
  });

  it('scaling that overflows float32 is refused', async () => {
    const path = await put('overflow.nii', craftFile({ ...base, datatype: 'int32', slope: 1e38 }, new Array(64).fill(100)));
    await expectRefused(path, 'NIFTI_NON_FINITE', /after scl_slope\/scl_inter scaling/);
  });

  it('vox_offset inside the header', async () => {
    const bytes = good();
    new DataView(bytes.buffer).setFloat32(108, 100, true);
    await expectRefused(await put('voxoff.nii', bytes), 'NIFTI_BAD_HEADER', /vox_offset 100 is not a byte offset after the 348-byte header/);
  });

  it('non-finite pixdim', async () => {
    const path = await put('pixdim.nii', craftFile({ ...base, pixdim: [1, 1, NaN, 1] }, sampleData('int16', 64)));
    await expectRefused(path, 'NIFTI_BAD_HEADER', /pixdim\[2\] is NaN/);
  });

  it('qform quaternion that is not a unit quaternion', async () => {
    const path = await put('quat.nii', craftFile({ ...base, qformCode: 1, quatern: [0.9, 0.9, 0.9] }, sampleData('int16', 64)));
    await expectRefused(path, 'NIFTI_BAD_HEADER', /b²\+c²\+d² > 1/);
  });

  it('non-finite sform in use', async () => {
    const path = await put('sform.nii', craftFile({ ...base, sformCode: 1, srow: [[1, 0, 0, 0], [0, Infinity, 0, 0], [0, 0, 1, 0]] }, sampleData('int16', 64)));
    await expectRefused(path, 'NIFTI_BAD_HEADER', /sform affine contains non-finite values/);
  });

  it('more than 4 dimensions in use', async () => {
    const path = await put('5d.nii', craftFile({ ...base, dim: [5, 2, 2, 2, 2, 2] }, sampleData('int16', 32)));
    await expectRefused(path, 'NIFTI_UNSUPPORTED', /dim\[5\] is 2; only 3D volumes and 4D volumes/);
  });

  it('missing file and directory', async () => {
    await expectRefused(join(dir, 'nope.nii.gz'), 'NIFTI_IO', /file not found/);
    await expectRefused(dir, 'NIFTI_IO', /is a directory/);
  });

  it('inspect refuses the same broken headers', async () => {
    const path = await put('inspect-bad.nii', craftFile({ ...base, dim: [9, 4, 4, 4] }, sampleData('int16', 64)));
    await expect(inspectNiftiFile(path)).rejects.toMatchObject({ code: 'NIFTI_BAD_HEADER', subject: path });
  });

  it('random garbage never crashes or hangs: every outcome is a volume or a PatchFedError', async () => {
    // Flip bytes of a valid file (plain and gzipped), deterministic seed; count outcomes.
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let refused = 0;
    let decoded = 0;
    for (let trial = 0; trial < 60; trial++) {
      const bytes = good();
      for (let k = 0; k < 4; k++) bytes[Math.floor(rnd() * 360)] = Math.floor(rnd() * 256);
      const payload = trial % 2 ? gzipSync(bytes) : bytes;
      if (trial % 3 === 0) payload[Math.floor(rnd() * payload.length)]! ^= 0x5a;
      const path = await put(`fuzz-${trial}.nii${trial % 2 ? '.gz' : ''}`, payload);
      try {
        const vol = await readNifti(path);
        expect(vol.data.length).toBe(vol.dims.reduce((a, b) => a * b, 1));
        decoded++;
      } catch (e) {
        expect(e).toBeInstanceOf(PatchFedError);
        refused++;
      }
    }
    expect(refused + decoded).toBe(60);
    expect(refused).toBeGreaterThan(0);
  });
});

