/**
 * Writing NIfTI-1 single files (.nii, or .nii.gz by extension), atomically: a temp file in the
 * same directory is written, fsynced and renamed over the target, so readers never see half a file.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { NIFTI1 } from 'nifti-reader-js';
import { PatchFedError } from '../errors.ts';
import type { Geometry } from '../geometry.ts';
import { NiftiDatatype } from '../volume.ts';
import { affineToQform, float32Quaternion } from './affine.ts';
import { arrayMatchesDatatype, bytesPerVoxel } from './datatypes.ts';
import { HOST_LITTLE_ENDIAN, swapBytesInPlace } from './decode.ts';
import { NIFTI1_DEFAULT_VOX_OFFSET } from './header.ts';
import type { NiftiWriteImage, NiftiWriteOptions } from './types.ts';

const NIFTI1_MAX_DIM = 32767; // dim[] is int16
const SLICE_BYTES = 4 << 20;
const UNITS_MM = 2;
const XFORM_SCANNER_ANAT = 1;

function fail(file: string, reason: string, cause?: unknown): never {
  throw new PatchFedError('NIFTI_WRITE', `${file}: cannot write NIfTI (${reason})`, { subject: file, cause });
}

function validateImage(file: string, image: NiftiWriteImage): void {
  if (!(image.datatype in NiftiDatatype)) fail(file, `unsupported datatype '${image.datatype}'`);
  if (!arrayMatchesDatatype(image.data, image.datatype)) {
    fail(file, `data is a ${image.data.constructor.name}, not the array type of ${image.datatype}`);
  }
  const { dims } = image;
  if (dims.length !== 3 && dims.length !== 4) fail(file, `dims [${dims.join(', ')}] must be [X, Y, Z] or [X, Y, Z, C]`);
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 1 || d > NIFTI1_MAX_DIM) fail(file, `dimension ${d} is not an integer in 1..${NIFTI1_MAX_DIM}`);
  }
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== image.data.length) fail(file, `dims ${dims.join('×')} = ${count} voxels but data has ${image.data.length}`);
}

/** Printable ASCII, at most 79 bytes, so the 80-byte descrip field stays NUL-terminated. */
function descriptionField(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 79);
}

/** The 352-byte header (348 + empty extension flag), serialised by nifti-reader-js. */
export function buildNifti1Header(file: string, image: NiftiWriteImage, geometry: Geometry, opts: NiftiWriteOptions): Uint8Array {
  let qform;
  try {
    qform = affineToQform(geometry.affine);
  } catch (e) {
    fail(file, (e as Error).message, e);
  }
  const hdr = new NIFTI1();
  hdr.littleEndian = (opts.endianness ?? 'little') === 'little';
  hdr.dims = [image.dims.length, ...image.dims, ...Array(7 - image.dims.length).fill(1)];
  hdr.datatypeCode = NiftiDatatype[image.datatype];
  hdr.numBitsPerVoxel = bytesPerVoxel(image.datatype) * 8;
  // pixdim agrees with the sform's column norms, so qform and sform describe the same grid.
  hdr.pixDims = [qform.qfac, ...qform.zooms, 1, 1, 1, 1];
  hdr.vox_offset = NIFTI1_DEFAULT_VOX_OFFSET;
  hdr.scl_slope = 1;
  hdr.scl_inter = 0;
  hdr.xyzt_units = geometry.xyztUnits > 0 ? geometry.xyztUnits : UNITS_MM;
  hdr.description = descriptionField(opts.description ?? '');
  hdr.aux_file = '';
  hdr.intent_name = '';
  hdr.qform_code = geometry.qformCode > 0 ? geometry.qformCode : XFORM_SCANNER_ANAT;
  hdr.sform_code = geometry.sformCode > 0 ? geometry.sformCode : XFORM_SCANNER_ANAT;
  [hdr.quatern_b, hdr.quatern_c, hdr.quatern_d] = float32Quaternion(qform.quatern);
  [hdr.qoffset_x, hdr.qoffset_y, hdr.qoffset_z] = qform.qoffset;
  hdr.affine = geometry.affine.map((row) => [...row]); // serialised as srow_x/y/z
  hdr.magic = 'n+1';
  return new Uint8Array(hdr.toArrayBuffer(false));
}

/** Header then voxel bytes in slices; foreign byte order is produced slice by slice (no full copy). */
function* fileChunks(header: Uint8Array, image: NiftiWriteImage, littleEndian: boolean): Generator<Uint8Array> {
  yield header;
  const bytes = new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  const width = bytesPerVoxel(image.datatype);
  const swap = littleEndian !== HOST_LITTLE_ENDIAN && width > 1;
  const step = SLICE_BYTES - (SLICE_BYTES % width);
  for (let at = 0; at < bytes.length; at += step) {
    const slice = bytes.subarray(at, Math.min(at + step, bytes.length));
    if (!swap) {
      yield slice;
    } else {
      const copy = slice.slice();
      swapBytesInPlace(copy, width);
      yield copy;
    }
  }
}

function tempPathFor(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** Best effort: make the rename durable. Some filesystems refuse fsync on directories. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    // durability of the directory entry is not worth failing a completed write
  }
}

/**
 * Write `image` as NIfTI-1 to `path` (.nii or .nii.gz), with the geometry of its source image:
 * the affine goes into both sform and qform (codes from the source, 1 when it had none),
 * pixdim[1..3] = affine column norms, scl_slope 1 / scl_inter 0, vox_offset 352.
 */
export async function writeNifti(
  path: string,
  image: NiftiWriteImage,
  geometry: Geometry,
  opts: NiftiWriteOptions = {},
): Promise<void> {
  const gzip = path.endsWith('.nii.gz');
  if (!gzip && !path.endsWith('.nii')) fail(path, 'file name must end in .nii or .nii.gz');
  validateImage(path, image);
  const level = opts.gzipLevel ?? 6;
  if (!Number.isInteger(level) || level < 0 || level > 9) fail(path, `gzipLevel ${level} is not an integer in 0..9`);
  const header = buildNifti1Header(path, image, geometry, opts);
  const littleEndian = (opts.endianness ?? 'little') === 'little';

  const temp = tempPathFor(path);
  let fh;
  try {
    fh = await open(temp, 'wx');
  } catch (e) {
    fail(path, (e as Error).message, e);
  }
  try {
    const chunks = fileChunks(header, image, littleEndian);
    const file = fh;
    const writeAll = async (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) => {
      for await (const chunk of source) {
        for (let done = 0; done < chunk.length; ) done += (await file.write(chunk, done)).bytesWritten;
      }
    };
    if (gzip) {
      await pipeline(Readable.from(chunks, { objectMode: false }), createGzip({ level }), writeAll);
    } else {
      await writeAll(chunks);
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(temp, path);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    fail(path, (e as Error).message, e);
  }
  await syncDirectory(dirname(path));
}
