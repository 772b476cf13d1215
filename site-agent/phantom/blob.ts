/**
 * Organic shapes: ellipsoids whose radius is modulated by a few low-frequency waves over the
 * direction from the centre (star-shaped, so "inside" is simply rho < 1). Rasterised only within
 * their bounding box, returning voxel indices so callers keep their own per-voxel logic inline.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Rng } from './prng.ts';
import { voxelRange, type SamplingGrid } from './grid.ts';

export type Vec3 = [number, number, number];
/** Rows are the blob's own axes expressed in anatomy space. */
export type Mat3 = [Vec3, Vec3, Vec3];

export interface Blob {
  centre: Vec3;
  radii: Vec3;
  axes: Mat3;
  /** Perturbation waves, 5 numbers each: direction (3), frequency, phase; amplitude in `amps`. */
  waves: Float64Array;
  amps: Float64Array;
}

export interface BlobVoxels {
  /** Linear voxel indices (x fastest) with rho < rhoMax, in increasing order. */
  index: Int32Array;
  /** Normalised radius per voxel: 0 at the centre, 1 on the surface. */
  rho: Float32Array;
}

export function rotationMatrix(axis: Vec3, angle: number): Mat3 {
  const n = Math.hypot(axis[0], axis[1], axis[2]) || 1;
  const [x, y, z] = [axis[0] / n, axis[1] / n, axis[2] / n];
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  const t = 1 - c;
  return [
    [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
    [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
    [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
  ];
}

export const IDENTITY3: Mat3 = [
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
];

export interface BlobShapeOptions {
  /** Sum of wave amplitudes (0 = perfect ellipsoid); kept below 0.6 so the radius stays positive. */
  roughness: number;
  /** Number of perturbation waves. */
  waves?: number;
  /** Largest random rotation of the ellipsoid axes, radians (0 = axis-aligned). */
  maxTilt?: number;
}

export function randomBlob(rng: Rng, centre: Vec3, radii: Vec3, opts: BlobShapeOptions): Blob {
  const count = opts.waves ?? 3;
  const roughness = Math.min(Math.max(opts.roughness, 0), 0.55);
  const waves = new Float64Array(count * 5);
  const amps = new Float64Array(count);
  let ampSum = 0;
  for (let w = 0; w < count; w++) {
    const d = rng.unitVector();
    waves.set([d[0], d[1], d[2], rng.uniform(1.5, 4), rng.uniform(0, 2 * Math.PI)], w * 5);
    amps[w] = rng.uniform(0.3, 1);
    ampSum += amps[w]!;
  }
  for (let w = 0; w < count; w++) amps[w] = ampSum > 0 ? (amps[w]! / ampSum) * roughness : 0;
  const tilt = opts.maxTilt ?? 0;
  const axes = tilt > 0 ? rotationMatrix(rng.unitVector(), rng.uniform(-tilt, tilt)) : IDENTITY3;
  return { centre, radii, axes, waves, amps };
}

/** Largest distance from the centre any point with rho < rhoMax can have, in mm. */
export function blobReach(blob: Blob, rhoMax = 1): number {
  let a = 0;
  for (const v of blob.amps) a += Math.abs(v);
  return Math.max(...blob.radii) * (1 + a) * rhoMax;
}

export function blobVoxels(grid: SamplingGrid, blob: Blob, rhoMax = 1): BlobVoxels {
  const [X, Y] = grid.shape;
  const reach = blobReach(blob, rhoMax);
  const [c0, c1, c2] = blob.centre;
  const [x0, x1] = voxelRange(grid, 0, c0, reach);
  const [y0, y1] = voxelRange(grid, 1, c1, reach);
  const [z0, z1] = voxelRange(grid, 2, c2, reach);
  const [mx, my, mz] = grid.mm;
  const [a0, a1, a2] = blob.axes;
  const ir0 = 1 / blob.radii[0];
  const ir1 = 1 / blob.radii[1];
  const ir2 = 1 / blob.radii[2];
  const { waves, amps } = blob;
  const nw = amps.length;
  const cap = Math.max(0, (x1 - x0 + 1) * (y1 - y0 + 1) * (z1 - z0 + 1));
  const index = new Int32Array(cap);
  const rho = new Float32Array(cap);
  let n = 0;
  for (let z = z0; z <= z1; z++) {
    const dz = mz[z]! - c2;
    for (let y = y0; y <= y1; y++) {
      const dy = my[y]! - c1;
      const row = (z * Y + y) * X;
      for (let x = x0; x <= x1; x++) {
        const dx = mx[x]! - c0;
        const q0 = (a0[0] * dx + a0[1] * dy + a0[2] * dz) * ir0;
        const q1 = (a1[0] * dx + a1[1] * dy + a1[2] * dz) * ir1;
        const q2 = (a2[0] * dx + a2[1] * dy + a2[2] * dz) * ir2;
        const r = Math.sqrt(q0 * q0 + q1 * q1 + q2 * q2);
        let f = 1;
        if (r > 0) {
          const inv = 1 / r;
          for (let w = 0; w < nw; w++) {
            const o = w * 5;
            const cosine = (waves[o]! * q0 + waves[o + 1]! * q1 + waves[o + 2]! * q2) * inv;
            f += amps[w]! * Math.sin(waves[o + 3]! * cosine + waves[o + 4]!);
          }
        }
        const p = r / f;
        if (p < rhoMax) {
          index[n] = row + x;
          rho[n] = p;
          n++;
        }
      }
    }
  }
  return { index: index.slice(0, n), rho: rho.slice(0, n) };
}
