/**
 * fslhd / nib-ls style report of one NIfTI file. Unlike readNifti it does not refuse NaN/Inf:
 * it counts them, since finding them is one reason to inspect a file.
 */
import type { VoxelArray } from '../volume.ts';
import { rawVoxels } from './decode.ts';
import { effectiveIntercept } from './header.ts';
import { readNiftiBytes } from './io.ts';
import type { NiftiFileReport, NiftiReadOptions, NiftiScaling, NiftiValueStats } from './types.ts';

const SPATIAL_UNITS: Record<number, NiftiFileReport['spatialUnits']> = { 1: 'meter', 2: 'mm', 3: 'micron' };

/** Stats of slope·raw[i] + inter over [from, to), computed without materialising scaled values. */
function valueStats(raw: VoxelArray, scaling: NiftiScaling, from: number, to: number): NiftiValueStats {
  const slope = scaling.applied ? scaling.slope : 1;
  const inter = scaling.applied ? effectiveIntercept(scaling) : 0;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let finite = 0;
  let nonFinite = 0;
  for (let i = from; i < to; i++) {
    // Math.fround: readNifti delivers scaled values as float32, so report what it would deliver.
    const v = scaling.applied ? Math.fround(raw[i] * slope + inter) : raw[i];
    if (v - v !== 0) {
      nonFinite++;
      continue;
    }
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    finite++;
  }
  return finite === 0
    ? { min: null, max: null, mean: null, nonFiniteVoxels: nonFinite }
    : { min, max, mean: sum / finite, nonFiniteVoxels: nonFinite };
}

/** Header facts plus value statistics of one file; see NiftiFileReport for the keys. */
export async function inspectNiftiFile(path: string, opts: NiftiReadOptions = {}): Promise<NiftiFileReport> {
  const { header, data, compressed, fileSizeBytes } = await readNiftiBytes(path, opts);
  const raw = rawVoxels(header, data);
  const g = header.geometry;
  const report: NiftiFileReport = {
    file: path,
    fileSizeBytes,
    compressed,
    niftiVersion: header.version,
    endianness: header.littleEndian ? 'little' : 'big',
    dims: [...header.dims],
    voxelCount: header.voxelCount,
    dataBytes: header.dataBytes,
    datatype: header.datatype,
    datatypeCode: header.datatypeCode,
    bitpix: header.bitpix,
    pixdim: [...header.pixdim],
    spacing: [...g.spacing],
    xyztUnits: header.xyztUnits,
    spatialUnits: SPATIAL_UNITS[header.xyztUnits & 7] ?? 'unknown',
    qformCode: header.qformCode,
    sformCode: header.sformCode,
    affine: g.affine.map((row) => [...row]) as NiftiFileReport['affine'],
    affineSource: g.affineSource,
    scaling: { ...header.scaling },
    stats: valueStats(raw, header.scaling, 0, raw.length),
    voxOffset: header.voxOffset,
    description: header.description,
  };
  if (header.dims.length === 4) {
    const perChannel = header.dims[0] * header.dims[1] * header.dims[2];
    report.channelStats = Array.from({ length: header.dims[3] }, (_, c) =>
      valueStats(raw, header.scaling, c * perChannel, (c + 1) * perChannel),
    );
  }
  return report;
}
