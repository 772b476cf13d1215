/**
 * A label map read for evaluation: integer labels 0..255 in the file's own (NIfTI) voxel order,
 * with its voxel→world affine and voxel size in millimetres (xyzt_units applied), and the check
 * that a prediction and its reference share one grid.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { Geometry, Mat4 } from '../../shared/geometry.ts';
import { readNifti } from '../../shared/nifti/index.ts';
import type { Grid3 } from '../metrics/distance-transform.ts';

/**
 * Largest difference allowed between the two files' affine entries (mm): float32 header
 * rounding and a qform/sform round trip stay orders of magnitude below it, a real grid
 * difference (a voxel shift, another spacing) is far above.
 */
export const AFFINE_TOLERANCE_MM = 1e-3;
/** Largest |cos| between two voxel axes still treated as orthogonal. */
const ORTHOGONALITY_TOLERANCE = 1e-4;

export interface LabelMap {
  file: string;
  /** NIfTI order: x fastest, index = x + X·(y + Y·z). */
  labels: Uint8Array;
  /** [X, Y, Z]. */
  shape: [number, number, number];
  /** Voxel → world (mm). */
  affineMm: Mat4;
  /** Voxel size along x, y, z in mm (the affine's column lengths). */
  spacingMm: [number, number, number];
}

/** mm per unit of the header's spatial unit code (0 unknown → mm, as nibabel and ITK assume). */
function millimetresPerUnit(xyztUnits: number): number {
  switch (xyztUnits & 0x07) {
    case 1:
      return 1000; // metre
    case 3:
      return 0.001; // micron
    default:
      return 1;
  }
}

/** A volume's voxel → world affine in mm (xyzt_units applied) and its voxel size along x, y, z (the affine's column lengths). */
export function geometryInMm(geometry: Geometry): { affineMm: Mat4; spacingMm: [number, number, number] } {
  const mm = millimetresPerUnit(geometry.xyztUnits);
  const affineMm = geometry.affine.map((row, r) => row.map((x, c) => (r < 3 ? x * mm : x))) as Mat4;
  const spacingMm: [number, number, number] = ([0, 1, 2] as const).map((c) => Math.hypot(affineMm[0][c], affineMm[1][c], affineMm[2][c])) as [number, number, number];
  return { affineMm, spacingMm };
}

export async function readLabelMap(file: string): Promise<LabelMap> {
  const volume = await readNifti(file);
  const dims = volume.dims;
  if (dims.length === 4 && dims[3] !== 1) {
    throw new PatchFedError('evaluate-label-dims', `${file}: a label map must be 3-D, this file has ${dims[3]} channels (${dims.join('x')})`, { subject: file });
  }
  const shape: [number, number, number] = [dims[0]!, dims[1]!, dims[2]!];
  const src = volume.data;
  const labels = new Uint8Array(src.length);
  const bad = new Set<number>();
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    // (v >>> 0) === v holds exactly for integers in [0, 2^32).
    if (v <= 255 && (v >>> 0) === v) labels[i] = v;
    else if (bad.size < 5) bad.add(v);
  }
  if (bad.size > 0) {
    throw new PatchFedError('evaluate-label-values', `${file}: label values must be integers in 0..255, found ${[...bad].join(', ')}`, { subject: file });
  }
  const { affineMm, spacingMm } = geometryInMm(volume.geometry);
  const columns = [0, 1, 2].map((c) => [affineMm[0][c], affineMm[1][c], affineMm[2][c]]);
  if (!spacingMm.every((s) => Number.isFinite(s) && s > 0)) {
    throw new PatchFedError('evaluate-spacing', `${file}: the affine gives voxel sizes ${spacingMm.join(', ')} mm; distances need positive voxel sizes`, { subject: file });
  }
  for (const [a, b] of [[0, 1], [0, 2], [1, 2]] as const) {
    const ca = columns[a]!;
    const cb = columns[b]!;
    const cos = (ca[0]! * cb[0]! + ca[1]! * cb[1]! + ca[2]! * cb[2]!) / (spacingMm[a] * spacingMm[b]);
    if (Math.abs(cos) > ORTHOGONALITY_TOLERANCE) {
      const deg = (Math.acos(Math.max(-1, Math.min(1, cos))) * 180) / Math.PI;
      throw new PatchFedError(
        'evaluate-sheared-grid',
        `${file}: voxel axes ${'xyz'[a]} and ${'xyz'[b]} meet at ${deg.toFixed(2)}° (sheared grid, e.g. a gantry tilt); surface distances need orthogonal voxel axes — resample the label and prediction to an orthogonal grid first`,
        { subject: file },
      );
    }
  }
  return { file, labels, shape, affineMm, spacingMm };
}

/** Refuses a reference whose grid (shape, affine) differs from the prediction's, naming both files. */
export function assertSameGrid(prediction: LabelMap, reference: LabelMap): void {
  const both = `prediction ${prediction.file} and label ${reference.file}`;
  if (prediction.shape.some((d, a) => d !== reference.shape[a])) {
    throw new PatchFedError('evaluate-grid-mismatch', `${both} are on different grids: shape ${prediction.shape.join('x')} vs ${reference.shape.join('x')}`, { subject: reference.file });
  }
  let worst = 0;
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) worst = Math.max(worst, Math.abs(prediction.affineMm[r]![c]! - reference.affineMm[r]![c]!));
  if (!(worst <= AFFINE_TOLERANCE_MM)) {
    const show = (m: Mat4) => m.slice(0, 3).map((row) => row.map((x) => Number(x.toFixed(4))).join(' ')).join('; ');
    throw new PatchFedError(
      'evaluate-grid-mismatch',
      `${both} are on different grids: their affines differ by up to ${worst.toPrecision(3)} mm (tolerance ${AFFINE_TOLERANCE_MM} mm): [${show(prediction.affineMm)}] vs [${show(reference.affineMm)}]`,
      { subject: reference.file },
    );
  }
}

/** Shape and spacing of a NIfTI-order volume as the row-major grid the metrics take: [Z, Y, X]. */
export function rowMajorGrid(map: LabelMap): { shape: Grid3; spacing: Grid3 } {
  const [X, Y, Z] = map.shape;
  const [sx, sy, sz] = map.spacingMm;
  return { shape: [Z, Y, X], spacing: [sz, sy, sx] };
}
