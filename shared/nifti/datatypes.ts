import { NiftiDatatype, type DatatypeName, type VoxelArray } from '../volume.ts';

type VoxelArrayConstructor = {
  new (length: number): VoxelArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): VoxelArray;
  readonly BYTES_PER_ELEMENT: number;
};

const ARRAY_OF: Record<DatatypeName, VoxelArrayConstructor> = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
};

const NAME_OF_CODE = new Map<number, DatatypeName>(
  (Object.entries(NiftiDatatype) as [DatatypeName, number][]).map(([name, code]) => [code, name]),
);

/** Datatype name for a NIfTI code, or undefined when we do not support it. */
export function datatypeFromCode(code: number): DatatypeName | undefined {
  return NAME_OF_CODE.get(code);
}

export function bytesPerVoxel(datatype: DatatypeName): number {
  return ARRAY_OF[datatype].BYTES_PER_ELEMENT;
}

/** Typed array view of `length` voxels over `buffer` (no copy; byteOffset must be aligned). */
export function voxelView(datatype: DatatypeName, buffer: ArrayBufferLike, byteOffset: number, length: number): VoxelArray {
  return new ARRAY_OF[datatype](buffer, byteOffset, length);
}

/** True when `data` is the typed array class that stores `datatype`. */
export function arrayMatchesDatatype(data: VoxelArray, datatype: DatatypeName): boolean {
  return data instanceof ARRAY_OF[datatype];
}

/** Readable names for codes we refuse, so the error says what the file holds. */
const UNSUPPORTED_NAMES: Record<number, string> = {
  0: 'none',
  1: 'binary',
  32: 'complex64',
  128: 'rgb24',
  1024: 'int64',
  1280: 'uint64',
  1536: 'float128',
  1792: 'complex128',
  2048: 'complex256',
  2304: 'rgba32',
};

export function describeDatatypeCode(code: number): string {
  const name = datatypeFromCode(code) ?? UNSUPPORTED_NAMES[code];
  return name ? `${code} (${name})` : `${code}`;
}
