/**
 * Voxel→world affines from NIfTI header fields, and back to qform parameters.
 * Reading follows nibabel's get_best_affine order (sform, then qform, then pixdim), with the
 * NIfTI "method 1" diagonal as the last resort; writing follows nibabel's set_qform/mat2quat.
 */
import type { AffineSource, Mat4 } from '../geometry.ts';

type Vec3 = [number, number, number];
type Mat3 = [Vec3, Vec3, Vec3];
/** Typed axis indices, so loops over x/y/z index the tuples without `undefined`. */
type Axis = 0 | 1 | 2;
const AXES: readonly Axis[] = [0, 1, 2];

export interface AffineFields {
  dim0: number;
  pixdim: number[];
  qformCode: number;
  sformCode: number;
  quatern: Vec3;
  qoffset: Vec3;
  srow: [number[], number[], number[]];
}

export interface QformParams {
  quatern: Vec3;
  qoffset: Vec3;
  /** ±1, stored in pixdim[0]. */
  qfac: number;
  /** Column norms of the affine's 3×3 part: the voxel size to store in pixdim[1..3]. */
  zooms: Vec3;
}

/** How far b²+c²+d² may exceed 1 (float32 rounding) before the quaternion counts as broken. */
const QUATERNION_TOLERANCE = 1e-5;

/**
 * Voxel spacing from pixdim[1..3]: absolute values, with zero/undefined dims as 1 — the values
 * nibabel's header check repairs pixdims to before it builds the qform.
 */
export function spacingFromPixdim(pixdim: number[], dim0: number): Vec3 {
  const out: Vec3 = [1, 1, 1];
  for (let i = 0; i < 3; i++) {
    const p = Math.abs(pixdim[i + 1] ?? 0);
    out[i] = i < dim0 && p > 0 && Number.isFinite(p) ? p : 1;
  }
  return out;
}

/** nibabel only accepts ±1 in pixdim[0] and repairs anything else (0 included) to 1. */
export function qfacFromPixdim0(pixdim0: number): 1 | -1 {
  return pixdim0 === -1 ? -1 : 1;
}

/** Rotation matrix of the unit quaternion (a, b, c, d) with a = sqrt(1 − b² − c² − d²). */
export function quaternionToRotation(b: number, c: number, d: number): Mat3 {
  const w2 = 1 - (b * b + c * c + d * d);
  if (!(w2 >= -QUATERNION_TOLERANCE)) {
    throw new Error(`qform quaternion (b, c, d) = (${b}, ${c}, ${d}) has b²+c²+d² > 1`);
  }
  let a = 0;
  if (w2 > 0) {
    a = Math.sqrt(w2);
  } else {
    // Tiny float32 overshoot: a is 0 and (b, c, d) is renormalised (as nifti1_io does).
    const n = Math.sqrt(b * b + c * c + d * d);
    b /= n;
    c /= n;
    d /= n;
  }
  return [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
  ];
}

/** x + 0 turns −0 into 0, so affines compare and serialise cleanly (JSON has no −0). */
const noNegZero = (x: number) => x + 0;

function withTranslation(m: Mat3, t: Vec3): Mat4 {
  return [
    [m[0][0], m[0][1], m[0][2], t[0]].map(noNegZero),
    [m[1][0], m[1][1], m[1][2], t[1]].map(noNegZero),
    [m[2][0], m[2][1], m[2][2], t[2]].map(noNegZero),
    [0, 0, 0, 1],
  ] as Mat4;
}

/** An srow_* row as read from a header; the readers always produce four values. */
function srowRow(row: number[], name: string): [number, number, number, number] {
  const [a, b, c, t] = row;
  if (a === undefined || b === undefined || c === undefined || t === undefined) {
    throw new Error(`${name} has ${row.length} values; an sform row needs 4`);
  }
  return [a, b, c, t];
}

/** The affine the header implies: sform if sform_code > 0, else qform if qform_code > 0, else pixdim scaling. */
export function affineFromHeaderFields(f: AffineFields): { affine: Mat4; source: AffineSource; qfac: 1 | -1 } {
  const qfac = qfacFromPixdim0(f.pixdim[0] ?? 0);
  const spacing = spacingFromPixdim(f.pixdim, f.dim0);
  if (f.sformCode > 0) {
    const x = srowRow(f.srow[0], 'srow_x');
    const y = srowRow(f.srow[1], 'srow_y');
    const z = srowRow(f.srow[2], 'srow_z');
    const m: Mat3 = [
      [x[0], x[1], x[2]],
      [y[0], y[1], y[2]],
      [z[0], z[1], z[2]],
    ];
    return { affine: withTranslation(m, [x[3], y[3], z[3]]), source: 'sform', qfac };
  }
  if (f.qformCode > 0) {
    const r = quaternionToRotation(...f.quatern);
    const scale: Vec3 = [spacing[0], spacing[1], spacing[2] * qfac];
    const m = r.map(([r0, r1, r2]) => [r0 * scale[0], r1 * scale[1], r2 * scale[2]]) as Mat3;
    return { affine: withTranslation(m, f.qoffset), source: 'qform', qfac };
  }
  const diag: Mat3 = [
    [spacing[0], 0, 0],
    [0, spacing[1], 0],
    [0, 0, spacing[2]],
  ];
  return { affine: withTranslation(diag, [0, 0, 0]), source: 'pixdim', qfac };
}

function det3(m: Mat3): number {
  return (
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
    m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
    m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
  );
}

/** Transpose of the inverse (cofactor matrix / det). */
function inverseTranspose(m: Mat3): Mat3 {
  const d = det3(m);
  const c = (r0: Axis, c0: Axis, r1: Axis, c1: Axis) => m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
  return [
    [c(1, 1, 2, 2) / d, -c(1, 0, 2, 2) / d, c(1, 0, 2, 1) / d],
    [-c(0, 1, 2, 2) / d, c(0, 0, 2, 2) / d, -c(0, 0, 2, 1) / d],
    [c(0, 1, 1, 2) / d, -c(0, 0, 1, 2) / d, c(0, 0, 1, 1) / d],
  ];
}

/**
 * Closest orthogonal matrix (polar factor), what nibabel gets from P·Qᵀ of the SVD.
 * Newton's iteration R ← (R + R⁻ᵀ)/2 converges quadratically for non-singular R.
 */
function nearestOrthogonal(r: Mat3): Mat3 {
  let cur = r.map((row) => [...row]) as Mat3;
  for (let iter = 0; iter < 100; iter++) {
    const it = inverseTranspose(cur);
    let change = 0;
    const next = AXES.map((i) =>
      AXES.map((j) => {
        const v = cur[i][j];
        const nv = (v + it[i][j]) / 2;
        change = Math.max(change, Math.abs(nv - v));
        return nv;
      }),
    ) as Mat3;
    cur = next;
    if (change < 1e-15) break;
  }
  return cur;
}

/** Unit quaternion [a, b, c, d] with a ≥ 0 of a proper rotation (Shepperd's method). */
function rotationToQuaternion(r: Mat3): [number, number, number, number] {
  const trace = r[0][0] + r[1][1] + r[2][2];
  let a: number, b: number, c: number, d: number;
  if (trace > r[0][0] && trace > r[1][1] && trace > r[2][2]) {
    const s = 2 * Math.sqrt(1 + trace);
    a = s / 4;
    b = (r[2][1] - r[1][2]) / s;
    c = (r[0][2] - r[2][0]) / s;
    d = (r[1][0] - r[0][1]) / s;
  } else if (r[0][0] >= r[1][1] && r[0][0] >= r[2][2]) {
    const s = 2 * Math.sqrt(Math.max(0, 1 + r[0][0] - r[1][1] - r[2][2]));
    a = (r[2][1] - r[1][2]) / s;
    b = s / 4;
    c = (r[0][1] + r[1][0]) / s;
    d = (r[0][2] + r[2][0]) / s;
  } else if (r[1][1] >= r[2][2]) {
    const s = 2 * Math.sqrt(Math.max(0, 1 + r[1][1] - r[0][0] - r[2][2]));
    a = (r[0][2] - r[2][0]) / s;
    b = (r[0][1] + r[1][0]) / s;
    c = s / 4;
    d = (r[1][2] + r[2][1]) / s;
  } else {
    const s = 2 * Math.sqrt(Math.max(0, 1 + r[2][2] - r[0][0] - r[1][1]));
    a = (r[1][0] - r[0][1]) / s;
    b = (r[0][2] + r[2][0]) / s;
    c = (r[1][2] + r[2][1]) / s;
    d = s / 4;
  }
  const n = Math.hypot(a, b, c, d);
  const sign = a < 0 ? -1 : 1;
  return [(sign * a) / n, (sign * b) / n, (sign * c) / n, (sign * d) / n];
}

/**
 * qform parameters of an affine, as nibabel's Nifti1Header.set_qform: zooms are the column
 * norms; an improper rotation gets qfac −1 and its third column negated; the result is made
 * orthogonal before conversion to a quaternion. Throws when the 3×3 part is singular.
 */
export function affineToQform(affine: Mat4): QformParams {
  const zooms: Vec3 = [0, 0, 0];
  for (const j of AXES) {
    zooms[j] = Math.hypot(affine[0][j], affine[1][j], affine[2][j]);
    if (!(zooms[j] > 0) || !Number.isFinite(zooms[j])) {
      throw new Error(`affine column ${j} has norm ${zooms[j]}; a voxel axis must have a finite non-zero length`);
    }
  }
  const r = AXES.map((i) => AXES.map((j) => affine[i][j] / zooms[j])) as Mat3;
  const det = det3(r);
  if (!(Math.abs(det) > 1e-8)) {
    throw new Error('affine rotation part is singular (voxel axes are parallel)');
  }
  let qfac = 1;
  if (det < 0) {
    qfac = -1;
    for (const i of AXES) r[i][2] = -r[i][2];
  }
  const [, b, c, d] = rotationToQuaternion(nearestOrthogonal(r));
  return { quatern: [b, c, d], qoffset: [affine[0][3], affine[1][3], affine[2][3]], qfac, zooms };
}

/** a as readers rebuild it from stored (b, c, d): sqrt(1 − b² − c² − d²), 0 when that is negative. */
function rebuiltA(q: Vec3): number {
  return Math.sqrt(Math.max(0, 1 - (q[0] * q[0] + q[1] * q[1] + q[2] * q[2])));
}

/**
 * (b, c, d) rounded to float32 for a NIfTI-1 header such that readers rebuild a accurately.
 * Plain rounding is fine for most rotations, but near 180° (a ≈ 0) the 1e-7 float32 error in
 * b²+c²+d² becomes an error of ~3e-4 in a and hence in the qform matrix. Nudging the largest
 * component by a few ulps picks the float32 triple whose rebuilt a is closest to the true a
 * (for a = 0: b²+c²+d² just ≥ 1, which nibabel and nifti1_io both read as a = 0).
 */
export function float32Quaternion(quatern: Vec3): Vec3 {
  const trueA = rebuiltA(quatern);
  const rounded = quatern.map(Math.fround) as Vec3;
  const big = AXES.reduce<Axis>((m, i) => (Math.abs(rounded[i]) > Math.abs(rounded[m]) ? i : m), 0);
  const magnitude = Math.abs(rounded[big]);
  if (magnitude === 0) return rounded; // identity rotation: (0, 0, 0) is exact
  const ulp = 2 ** (Math.floor(Math.log2(magnitude)) - 23); // float32 spacing at this magnitude
  let best = rounded;
  let bestErr = Math.abs(rebuiltA(rounded) - trueA);
  for (let k = -8; k <= 8; k++) {
    const candidate = [...rounded] as Vec3;
    candidate[big] = Math.fround(rounded[big] + k * ulp * Math.sign(rounded[big]));
    const sumSq = candidate[0] ** 2 + candidate[1] ** 2 + candidate[2] ** 2;
    if (sumSq > 1 + 1e-7) continue; // stay inside nibabel's tolerance for b²+c²+d² > 1
    const err = Math.abs(rebuiltA(candidate) - trueA);
    if (err < bestErr) {
      best = candidate;
      bestErr = err;
    }
  }
  return best;
}
