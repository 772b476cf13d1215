/**
 * Large crafted NIfTI files for the memory tests and measurements: a real header
 * (test/nifti-craft.ts) followed by a voxel stream that is zero except for a few known values,
 * written through gzip as a stream, so a file promising gigabytes costs a few MB on disk and
 * never more than a chunk in memory while it is written.
 *
 *   npx tsx test/nifti-memory-fixtures.ts <out.nii.gz> <X,Y,Z> <datatype> [slope]
 * writes one such file (zeros plus the SPARSE_VALUES) for measurements by hand.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import { craftHeader, encodeValues, type CraftOptions } from './nifti-craft.ts';
import type { DatatypeName } from '../shared/volume.ts';

const WIDTH: Record<DatatypeName, number> = { uint8: 1, int8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, float32: 4, float64: 8 };

/** Values placed at known voxel indices, so statistics over the whole file are known exactly. */
export interface SparseValue {
  index: number;
  value: number;
}

export interface SparseNifti extends CraftOptions {
  datatype: DatatypeName;
  values: SparseValue[];
}

/** Writes header + voxels (zero except `values`), gzip-compressed when `path` ends with .gz. */
export async function writeSparseNifti(path: string, o: SparseNifti): Promise<{ voxels: number; dataBytes: number }> {
  const width = WIDTH[o.datatype];
  const dims = o.dim.slice(1, 1 + (o.dim[0] ?? 3)).map((d) => d ?? 1);
  const voxels = dims.reduce((a, b) => a * b, 1);
  const dataBytes = voxels * width;
  const file = createWriteStream(path);
  const gzip = path.endsWith('.gz') ? createGzip({ level: 1 }) : null;
  const sink = gzip ?? file;
  if (gzip) gzip.pipe(file);
  const write = async (bytes: Uint8Array) => {
    if (!sink.write(bytes)) await once(sink, 'drain');
  };
  await write(craftHeader(o));
  const sorted = [...o.values].sort((a, b) => a.index - b.index);
  const chunkVoxels = Math.max(1, Math.floor((4 << 20) / width));
  const zeros = new Uint8Array(chunkVoxels * width);
  let next = 0;
  for (let start = 0; start < voxels; start += chunkVoxels) {
    const n = Math.min(chunkVoxels, voxels - start);
    let chunk = zeros.subarray(0, n * width);
    if (next < sorted.length && sorted[next]!.index < start + n) {
      chunk = chunk.slice();
      while (next < sorted.length && sorted[next]!.index < start + n) {
        const { index, value } = sorted[next++]!;
        chunk.set(encodeValues([value], o.datatype, o.littleEndian ?? true), (index - start) * width);
      }
    }
    await write(chunk);
  }
  sink.end();
  await once(file, 'close');
  return { voxels, dataBytes };
}

/** Voxel values as readNifti would deliver them: slope·raw + inter, rounded to float32 when scaled. */
export function expectedStats(o: SparseNifti, voxels: number): { min: number; max: number; mean: number } {
  const slope = o.slope ?? 1;
  const inter = o.inter ?? 0;
  const scaled = slope !== 0 && !(slope === 1 && inter === 0);
  const at = (raw: number) => (scaled ? Math.fround(raw * slope + inter) : raw);
  const zero = at(0);
  let min = zero;
  let max = zero;
  let sum = 0;
  for (const v of o.values) {
    const x = at(v.value);
    min = Math.min(min, x);
    max = Math.max(max, x);
    sum += x - zero;
  }
  return { min, max, mean: zero + sum / voxels };
}

if (process.argv[1]?.endsWith('nifti-memory-fixtures.ts')) {
  const [out, shape, datatype, slope] = process.argv.slice(2);
  if (!out || !shape || !datatype) throw new Error('usage: nifti-memory-fixtures.ts <out.nii.gz> <X,Y,Z> <datatype> [slope]');
  const dims = shape.split(',').map(Number);
  const o: SparseNifti = { dim: [3, ...dims], datatype: datatype as DatatypeName, slope: slope ? Number(slope) : 1, values: [{ index: 0, value: 7 }, { index: 12345, value: 3 }] };
  const { voxels, dataBytes } = await writeSparseNifti(out, o);
  process.stdout.write(`${out}: ${voxels} voxels, ${dataBytes} data bytes\n`);
}
