/**
 * Parse and validate a NIfTI-1 / NIfTI-2 header from its first bytes. Everything that decides
 * how much memory decoding needs is checked here, so callers can refuse a file before allocating.
 */
import { PatchFedError } from '../errors.ts';
import type { Geometry } from '../geometry.ts';
import { affineFromHeaderFields, spacingFromPixdim } from './affine.ts';
import { bytesPerVoxel, datatypeFromCode, describeDatatypeCode } from './datatypes.ts';
import { DEFAULT_MAX_VOXELS, type NiftiHeader, type NiftiReadOptions, type NiftiScaling } from './types.ts';

export const NIFTI1_HEADER_SIZE = 348;
export const NIFTI2_HEADER_SIZE = 540;
/** Data offset of a single-file NIfTI without extensions (header + 4-byte extension flag). */
export const NIFTI1_DEFAULT_VOX_OFFSET = 352;
export const NIFTI2_DEFAULT_VOX_OFFSET = 544;

const NIFTI2_MAGIC_TAIL = [0x0d, 0x0a, 0x1a, 0x0a];

function fail(file: string, code: string, reason: string): never {
  throw new PatchFedError(code, `${file}: ${reason}`, { subject: file });
}

function cString(bytes: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && bytes[end] !== 0) end++;
  // Latin-1: every byte maps to one character, so garbage cannot throw.
  return String.fromCharCode(...bytes.subarray(start, end)).trim();
}

/** Which NIfTI flavour and byte order `sizeof_hdr` announces, or undefined if neither. */
function detectVersion(view: DataView): { version: 1 | 2; littleEndian: boolean } | undefined {
  for (const littleEndian of [true, false]) {
    const size = view.getInt32(0, littleEndian);
    if (size === NIFTI1_HEADER_SIZE) return { version: 1, littleEndian };
    if (size === NIFTI2_HEADER_SIZE) return { version: 2, littleEndian };
  }
  return undefined;
}

/** Raw header fields, independent of version. */
interface RawFields {
  dim: number[];
  datatypeCode: number;
  bitpix: number;
  pixdim: number[];
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  xyztUnits: number;
  qformCode: number;
  sformCode: number;
  quatern: [number, number, number];
  qoffset: [number, number, number];
  srow: [number[], number[], number[]];
  description: string;
  intentCode: number;
  magic: number[];
}

function readNifti1Fields(bytes: Uint8Array, view: DataView, le: boolean): RawFields {
  const f32 = (o: number) => view.getFloat32(o, le);
  const srowAt = (o: number) => [0, 1, 2, 3].map((i) => f32(o + 4 * i));
  return {
    dim: Array.from({ length: 8 }, (_, i) => view.getInt16(40 + 2 * i, le)),
    intentCode: view.getInt16(68, le),
    datatypeCode: view.getInt16(70, le),
    bitpix: view.getInt16(72, le),
    pixdim: Array.from({ length: 8 }, (_, i) => f32(76 + 4 * i)),
    voxOffset: f32(108),
    sclSlope: f32(112),
    sclInter: f32(116),
    xyztUnits: view.getUint8(123),
    description: cString(bytes, 148, 80),
    qformCode: view.getInt16(252, le),
    sformCode: view.getInt16(254, le),
    quatern: [f32(256), f32(260), f32(264)],
    qoffset: [f32(268), f32(272), f32(276)],
    srow: [srowAt(280), srowAt(296), srowAt(312)],
    magic: Array.from(bytes.subarray(344, 348)),
  };
}

/** int64 as a JS number; values beyond 2^53 become Infinity so validation refuses them. */
function int64(view: DataView, offset: number, le: boolean): number {
  const v = view.getBigInt64(offset, le);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : v < -BigInt(Number.MAX_SAFE_INTEGER) ? -Infinity : Number(v);
}

function readNifti2Fields(bytes: Uint8Array, view: DataView, le: boolean): RawFields {
  const f64 = (o: number) => view.getFloat64(o, le);
  const srowAt = (o: number) => [0, 1, 2, 3].map((i) => f64(o + 8 * i));
  return {
    magic: Array.from(bytes.subarray(4, 12)),
    datatypeCode: view.getInt16(12, le),
    bitpix: view.getInt16(14, le),
    dim: Array.from({ length: 8 }, (_, i) => int64(view, 16 + 8 * i, le)),
    pixdim: Array.from({ length: 8 }, (_, i) => f64(104 + 8 * i)),
    voxOffset: int64(view, 168, le),
    sclSlope: f64(176),
    sclInter: f64(184),
    description: cString(bytes, 240, 80),
    qformCode: view.getInt32(344, le),
    sformCode: view.getInt32(348, le),
    quatern: [f64(352), f64(360), f64(368)],
    qoffset: [f64(376), f64(384), f64(392)],
    srow: [srowAt(400), srowAt(432), srowAt(464)],
    xyztUnits: view.getInt32(500, le),
    intentCode: view.getInt32(504, le),
  };
}

function checkMagic(file: string, version: 1 | 2, magic: number[]): void {
  const text = String.fromCharCode(...magic.slice(0, 3));
  const pair = version === 1 ? 'ni1' : 'ni2';
  const single = version === 1 ? 'n+1' : 'n+2';
  if (text === pair && magic[3] === 0) {
    fail(file, 'NIFTI_UNSUPPORTED', `magic '${pair}' means the voxels live in a separate .img file; only single-file .nii / .nii.gz is supported`);
  }
  const tailOk = version === 1 || NIFTI2_MAGIC_TAIL.every((b, i) => magic[4 + i] === b);
  if (text !== single || magic[3] !== 0 || !tailOk) {
    const shown = magic.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
    fail(file, 'NIFTI_BAD_MAGIC', `wrong magic '${shown}' for NIfTI-${version} (expected '${single}')`);
  }
}

/** dims [X, Y, Z] or [X, Y, Z, C] after validating dim[0..7]; refuses before any allocation. */
function validateDims(
  file: string,
  dim: number[],
  maxVoxels: number,
): { ndim: number; shape: [number, number, number]; dims: number[]; voxelCount: number } {
  const at = (i: number): number => dim[i] ?? fail(file, 'NIFTI_BAD_HEADER', `dim[${i}] is missing`);
  const ndim = at(0);
  if (!(Number.isInteger(ndim) && ndim >= 1 && ndim <= 7)) {
    fail(file, 'NIFTI_BAD_HEADER', `dim[0] is ${ndim}; it must be between 1 and 7`);
  }
  let count = 1;
  for (let i = 1; i <= ndim; i++) {
    const d = at(i);
    // Infinity (an int64 beyond 2^53) passes here and is refused as too large just below.
    if (Number.isNaN(d) || d < 1) {
      fail(file, 'NIFTI_BAD_HEADER', `dim[${i}] is ${d}; every dimension must be at least 1`);
    }
    // Checked per factor so the running product never leaves the exactly representable range.
    count *= d;
    if (count > maxVoxels) {
      fail(file, 'NIFTI_TOO_LARGE', `dimensions ${dim.slice(1, ndim + 1).join('×')} exceed the maximum of ${maxVoxels} voxels`);
    }
  }
  for (let i = 5; i <= ndim; i++) {
    if (dim[i] !== 1) {
      fail(file, 'NIFTI_UNSUPPORTED', `dim[${i}] is ${dim[i]}; only 3D volumes and 4D volumes (4th dimension = channel) are supported`);
    }
  }
  const size = (i: number) => (i <= ndim ? at(i) : 1);
  const shape: [number, number, number] = [size(1), size(2), size(3)];
  const dims: number[] = [...shape];
  if (size(4) > 1) dims.push(size(4));
  return { ndim, shape, dims, voxelCount: count };
}

/** The intercept scaling uses: nibabel reads a non-finite scl_inter as 0. */
export function effectiveIntercept(scaling: NiftiScaling): number {
  return Number.isFinite(scaling.inter) ? scaling.inter : 0;
}

function scalingOf(slope: number, inter: number): NiftiScaling {
  // NIfTI/nibabel: slope 0 (or non-finite) means "no scaling".
  const usable = Number.isFinite(slope) && slope !== 0;
  const scaling = { slope, inter, applied: false };
  scaling.applied = usable && !(slope === 1 && effectiveIntercept(scaling) === 0);
  return scaling;
}

/**
 * Parse and validate the header at the start of `bytes` (at least 348 bytes for NIfTI-1,
 * 540 for NIfTI-2; the caller passes what it has). `file` names the file in error messages.
 */
export function parseNiftiHeader(bytes: Uint8Array, file: string, opts: NiftiReadOptions = {}): NiftiHeader {
  const maxVoxels = opts.maxVoxels ?? DEFAULT_MAX_VOXELS;
  if (bytes.length < 4) fail(file, 'NIFTI_TRUNCATED', `file is ${bytes.length} bytes, too short to be NIfTI`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const detected = detectVersion(view);
  if (!detected) {
    fail(
      file,
      'NIFTI_BAD_HEADER',
      `sizeof_hdr is ${view.getInt32(0, true)} (little-endian) / ${view.getInt32(0, false)} (big-endian); expected 348 (NIfTI-1) or 540 (NIfTI-2)`,
    );
  }
  const { version, littleEndian } = detected;
  const headerSize = version === 1 ? NIFTI1_HEADER_SIZE : NIFTI2_HEADER_SIZE;
  if (bytes.length < headerSize) {
    fail(file, 'NIFTI_TRUNCATED', `file ends after ${bytes.length} bytes, inside the ${headerSize}-byte NIfTI-${version} header`);
  }
  const raw = version === 1 ? readNifti1Fields(bytes, view, littleEndian) : readNifti2Fields(bytes, view, littleEndian);
  checkMagic(file, version, raw.magic);

  const { ndim, shape, dims, voxelCount } = validateDims(file, raw.dim, maxVoxels);
  const datatype = datatypeFromCode(raw.datatypeCode);
  if (!datatype) fail(file, 'NIFTI_UNSUPPORTED', `unsupported datatype ${describeDatatypeCode(raw.datatypeCode)}`);
  const dataBytes = voxelCount * bytesPerVoxel(datatype);

  const defaultOffset = version === 1 ? NIFTI1_DEFAULT_VOX_OFFSET : NIFTI2_DEFAULT_VOX_OFFSET;
  // Old writers leave vox_offset 0 in single files; the data then follows the header directly.
  const voxOffset = raw.voxOffset === 0 ? defaultOffset : raw.voxOffset;
  if (!Number.isInteger(voxOffset) || voxOffset < headerSize) {
    fail(file, 'NIFTI_BAD_HEADER', `vox_offset ${raw.voxOffset} is not a byte offset after the ${headerSize}-byte header`);
  }
  for (let i = 1; i <= 3; i++) {
    if (!Number.isFinite(raw.pixdim[i] ?? NaN)) fail(file, 'NIFTI_BAD_HEADER', `pixdim[${i}] is ${raw.pixdim[i]}`);
  }

  let affine;
  try {
    affine = affineFromHeaderFields({ ...raw, dim0: ndim });
  } catch (e) {
    fail(file, 'NIFTI_BAD_HEADER', (e as Error).message);
  }
  if (!affine.affine.flat().every(Number.isFinite)) {
    fail(file, 'NIFTI_BAD_HEADER', `the ${affine.source} affine contains non-finite values`);
  }
  const geometry: Geometry = {
    shape,
    spacing: spacingFromPixdim(raw.pixdim, ndim),
    qformCode: raw.qformCode,
    sformCode: raw.sformCode,
    affine: affine.affine,
    affineSource: affine.source,
    qfac: affine.qfac,
    xyztUnits: raw.xyztUnits,
  };
  return {
    version,
    littleEndian,
    dim: raw.dim,
    dims,
    datatypeCode: raw.datatypeCode,
    datatype,
    bitpix: raw.bitpix,
    pixdim: raw.pixdim,
    voxOffset,
    scaling: scalingOf(raw.sclSlope, raw.sclInter),
    xyztUnits: raw.xyztUnits,
    qformCode: raw.qformCode,
    sformCode: raw.sformCode,
    quatern: raw.quatern,
    qoffset: raw.qoffset,
    srow: raw.srow,
    description: raw.description,
    intentCode: raw.intentCode,
    voxelCount,
    dataBytes,
    geometry,
  };
}
