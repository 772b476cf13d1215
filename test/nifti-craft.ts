/**
 * Byte-by-byte NIfTI-1/2 file construction for tests, independent of shared/nifti's writer, so
 * reader tests do not just check the writer against itself.
 */
import { NiftiDatatype, type DatatypeName } from '../shared/volume.ts';

export interface CraftOptions {
  version?: 1 | 2;
  littleEndian?: boolean;
  /** dim[0..7]; missing entries are 1. */
  dim: number[];
  datatype: DatatypeName | number;
  bitpix?: number;
  pixdim?: number[];
  /** Defaults to 352 (v1) / 544 (v2), or after the extension when there is one. */
  voxOffset?: number;
  slope?: number;
  inter?: number;
  qformCode?: number;
  sformCode?: number;
  quatern?: [number, number, number];
  qoffset?: [number, number, number];
  srow?: [number[], number[], number[]];
  xyztUnits?: number;
  description?: string;
  /** Raw magic bytes (v1: 4, v2: 8); default the single-file magic. */
  magic?: number[];
  sizeofHdr?: number;
  /** Extension payload written after the extension flag (flag set to 1). */
  extension?: { code: number; data: Uint8Array };
}

const WIDTH: Record<DatatypeName, number> = {
  uint8: 1, int8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, float32: 4, float64: 8,
};

function datatypeCode(d: DatatypeName | number): number {
  return typeof d === 'number' ? d : NiftiDatatype[d];
}

/** Header + extension flag (+ extension) + padding up to vox_offset. */
export function craftHeader(o: CraftOptions): Uint8Array {
  const version = o.version ?? 1;
  const le = o.littleEndian ?? true;
  const hdrSize = version === 1 ? 348 : 540;
  const extBytes = o.extension ? 8 + o.extension.data.length : 0;
  const extPadded = extBytes === 0 ? 0 : Math.ceil(extBytes / 16) * 16;
  const voxOffset = o.voxOffset ?? hdrSize + 4 + extPadded;
  const bytes = new Uint8Array(Math.max(voxOffset, hdrSize + 4 + extPadded));
  const v = new DataView(bytes.buffer);
  const dim = [...o.dim, ...Array(8).fill(1)].slice(0, 8);
  const pixdim = [...(o.pixdim ?? [1, 1, 1, 1]), ...Array(8).fill(1)].slice(0, 8);
  const code = datatypeCode(o.datatype);
  const bitpix = o.bitpix ?? (typeof o.datatype === 'number' ? 8 : WIDTH[o.datatype] * 8);
  const srow = o.srow ?? [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]];
  const quatern = o.quatern ?? [0, 0, 0];
  const qoffset = o.qoffset ?? [0, 0, 0];
  const ascii = (text: string, at: number) => bytes.set(Array.from(text, (c) => c.charCodeAt(0)), at);

  v.setInt32(0, o.sizeofHdr ?? hdrSize, le);
  if (version === 1) {
    dim.forEach((d, i) => v.setInt16(40 + 2 * i, d, le));
    v.setInt16(70, code, le);
    v.setInt16(72, bitpix, le);
    pixdim.forEach((p, i) => v.setFloat32(76 + 4 * i, p, le));
    v.setFloat32(108, voxOffset, le);
    v.setFloat32(112, o.slope ?? 1, le);
    v.setFloat32(116, o.inter ?? 0, le);
    v.setUint8(123, o.xyztUnits ?? 2);
    ascii(o.description ?? '', 148);
    v.setInt16(252, o.qformCode ?? 0, le);
    v.setInt16(254, o.sformCode ?? 0, le);
    quatern.forEach((q, i) => v.setFloat32(256 + 4 * i, q, le));
    qoffset.forEach((q, i) => v.setFloat32(268 + 4 * i, q, le));
    srow.forEach((row, r) => row.forEach((x, c) => v.setFloat32(280 + 16 * r + 4 * c, x, le)));
    bytes.set(o.magic ?? [0x6e, 0x2b, 0x31, 0x00], 344);
  } else {
    bytes.set(o.magic ?? [0x6e, 0x2b, 0x32, 0x00, 0x0d, 0x0a, 0x1a, 0x0a], 4);
    v.setInt16(12, code, le);
    v.setInt16(14, bitpix, le);
    dim.forEach((d, i) => v.setBigInt64(16 + 8 * i, BigInt(d), le));
    pixdim.forEach((p, i) => v.setFloat64(104 + 8 * i, p, le));
    v.setBigInt64(168, BigInt(voxOffset), le);
    v.setFloat64(176, o.slope ?? 1, le);
    v.setFloat64(184, o.inter ?? 0, le);
    ascii(o.description ?? '', 240);
    v.setInt32(344, o.qformCode ?? 0, le);
    v.setInt32(348, o.sformCode ?? 0, le);
    quatern.forEach((q, i) => v.setFloat64(352 + 8 * i, q, le));
    qoffset.forEach((q, i) => v.setFloat64(376 + 8 * i, q, le));
    srow.forEach((row, r) => row.forEach((x, c) => v.setFloat64(400 + 32 * r + 8 * c, x, le)));
    v.setInt32(500, o.xyztUnits ?? 2, le);
  }
  if (o.extension) {
    bytes[hdrSize] = 1;
    v.setInt32(hdrSize + 4, extPadded, le);
    v.setInt32(hdrSize + 8, o.extension.code, le);
    bytes.set(o.extension.data, hdrSize + 12);
  }
  return bytes.subarray(0, voxOffset);
}

/** Voxel values in the given datatype and byte order, via DataView (not typed-array views). */
export function encodeValues(values: ArrayLike<number>, datatype: DatatypeName, littleEndian: boolean): Uint8Array {
  const w = WIDTH[datatype];
  const out = new Uint8Array(values.length * w);
  const v = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    const at = i * w;
    switch (datatype) {
      case 'uint8': v.setUint8(at, x); break;
      case 'int8': v.setInt8(at, x); break;
      case 'int16': v.setInt16(at, x, littleEndian); break;
      case 'uint16': v.setUint16(at, x, littleEndian); break;
      case 'int32': v.setInt32(at, x, littleEndian); break;
      case 'uint32': v.setUint32(at, x, littleEndian); break;
      case 'float32': v.setFloat32(at, x, littleEndian); break;
      case 'float64': v.setFloat64(at, x, littleEndian); break;
    }
  }
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A whole single-file NIfTI: header (with o.datatype as a name) followed by the encoded values. */
export function craftFile(o: CraftOptions & { datatype: DatatypeName }, values: ArrayLike<number>): Uint8Array {
  return concatBytes(craftHeader(o), encodeValues(values, o.datatype, o.littleEndian ?? true));
}

/** Per-datatype sample values including the extremes, so narrowing or sign errors show. */
export const SAMPLE_VALUES: Record<DatatypeName, number[]> = {
  uint8: [0, 1, 127, 128, 255],
  int8: [-128, -1, 0, 1, 127],
  int16: [-32768, -1, 0, 1, 32767],
  uint16: [0, 1, 32768, 40000, 65535],
  int32: [-2147483648, -1, 0, 1, 2147483647],
  uint32: [0, 1, 2147483648, 3000000000, 4294967295],
  float32: [-3.5, 0, 1.25, 1e-20, 3.4e38],
  float64: [-1e300, 0, Math.PI, 5e-324, 1e300],
};

/** n values cycling through SAMPLE_VALUES[datatype]. */
export function sampleData(datatype: DatatypeName, n: number): number[] {
  const s = SAMPLE_VALUES[datatype];
  return Array.from({ length: n }, (_, i) => s[i % s.length]!);
}

export const ALL_DATATYPES = Object.keys(WIDTH) as DatatypeName[];
