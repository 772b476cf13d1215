/**
 * fslhd / nib-ls style report of one NIfTI file. Unlike readNifti it does not refuse NaN/Inf:
 * it counts them, since finding them is one reason to inspect a file.
 *
 * The statistics are computed in one streaming pass over the voxels (io.ts pumpNiftiVoxels):
 * memory stays at a batch of values whatever the file promises — a 3 MB .nii.gz of a 2.9 GB
 * volume no longer needs 3 GB to be inspected. Values are summed in file order, exactly as a
 * pass over the whole decoded array would.
 */
import type { VoxelArray } from '../volume.ts';
import { effectiveIntercept } from './header.ts';
import { pumpNiftiVoxels } from './io.ts';
import type { NiftiFileReport, NiftiHeader, NiftiReadOptions, NiftiScaling, NiftiValueStats } from './types.ts';
import { voxelValueSink } from './voxel-stream.ts';

const SPATIAL_UNITS: Record<number, NiftiFileReport['spatialUnits']> = { 1: 'meter', 2: 'mm', 3: 'micron' };

/** Running min / max / sum of slope·raw + inter over finite values, and the count of the rest. */
class StatsAccumulator {
  private min = Infinity;
  private max = -Infinity;
  private sum = 0;
  private finite = 0;
  private nonFinite = 0;

  constructor(private readonly scaling: NiftiScaling) {}

  add(raw: VoxelArray, from: number, to: number): void {
    const applied = this.scaling.applied;
    const slope = applied ? this.scaling.slope : 1;
    const inter = applied ? effectiveIntercept(this.scaling) : 0;
    let { min, max, sum, finite, nonFinite } = this;
    // Hot per-voxel loop: callers pass from/to within raw, so raw[i]! needs no runtime check.
    for (let i = from; i < to; i++) {
      // Math.fround: readNifti delivers scaled values as float32, so report what it would deliver.
      const v = applied ? Math.fround(raw[i]! * slope + inter) : raw[i]!;
      if (v - v !== 0) {
        nonFinite++;
        continue;
      }
      if (v < min) min = v;
      if (v > max) max = v;
      sum += v;
      finite++;
    }
    Object.assign(this, { min, max, sum, finite, nonFinite });
  }

  result(): NiftiValueStats {
    return this.finite === 0
      ? { min: null, max: null, mean: null, nonFiniteVoxels: this.nonFinite }
      : { min: this.min, max: this.max, mean: this.sum / this.finite, nonFiniteVoxels: this.nonFinite };
  }
}

/** Header facts plus value statistics of one file; see NiftiFileReport for the keys. */
export async function inspectNiftiFile(path: string, opts: NiftiReadOptions = {}): Promise<NiftiFileReport> {
  const acc: { all: StatsAccumulator | null; channels: StatsAccumulator[]; perChannel: number } = { all: null, channels: [], perChannel: 1 };
  const result = await pumpNiftiVoxels(
    path,
    opts,
    voxelValueSink({
      begin: (h: NiftiHeader) => {
        acc.all = new StatsAccumulator(h.scaling);
        const [x, y, z] = h.geometry.shape;
        const channelCount = h.dims[3];
        acc.perChannel = x * y * z;
        acc.channels = channelCount !== undefined ? Array.from({ length: channelCount }, () => new StatsAccumulator(h.scaling)) : [];
      },
      values: (values, first) => {
        acc.all?.add(values, 0, values.length);
        // Split the batch at channel boundaries (channels are the slowest axis).
        for (let k = 0; k < values.length && acc.channels.length > 0; ) {
          const channel = Math.floor((first + k) / acc.perChannel);
          const end = Math.min(values.length, (channel + 1) * acc.perChannel - first);
          acc.channels[channel]?.add(values, k, end);
          k = end;
        }
      },
    }),
  );
  const { header, compressed, fileSizeBytes } = result;
  const g = header.geometry;
  const stats = acc.all?.result() ?? { min: null, max: null, mean: null, nonFiniteVoxels: 0 };
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
    stats,
    voxOffset: header.voxOffset,
    description: header.description,
  };
  if (header.dims.length === 4) report.channelStats = acc.channels.map((c) => c.result());
  return report;
}
