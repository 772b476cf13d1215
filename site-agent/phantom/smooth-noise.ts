/**
 * Cheap smooth random fields (tissue texture, bias fields): random values on a coarse lattice
 * in millimetres, trilinearly interpolated to the voxel grid. The lattice is in mm so texture
 * has the same physical scale at every site, whatever its voxel spacing.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Rng } from './prng.ts';
import type { SamplingGrid } from './grid.ts';

interface AxisInterp {
  i0: Int32Array;
  w: Float32Array;
  nodes: number;
}

function axisInterp(rng: Rng, coords: Float64Array, featureMm: number): AxisInterp {
  const n = coords.length;
  const lo = coords[0]!;
  const hi = coords[n - 1]!;
  const jitter = rng.uniform(0, featureMm); // lattice position differs per field
  const start = lo - jitter;
  const nodes = Math.floor((hi - start) / featureMm) + 2;
  const i0 = new Int32Array(n);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const t = (coords[i]! - start) / featureMm;
    const f = Math.min(Math.floor(t), nodes - 2);
    i0[i] = f;
    w[i] = t - f;
  }
  return { i0, w, nodes };
}

/**
 * A field with values in [-1, 1] varying over about `featureMm`. Node values are uniform, so the
 * interpolated field has standard deviation ≈ 0.35–0.5.
 */
export function smoothNoise(rng: Rng, grid: SamplingGrid, featureMm: number, out?: Float32Array): Float32Array {
  const [X, Y, Z] = grid.shape;
  const ax = axisInterp(rng, grid.mm[0], featureMm);
  const ay = axisInterp(rng, grid.mm[1], featureMm);
  const az = axisInterp(rng, grid.mm[2], featureMm);
  const NX = ax.nodes;
  const NY = ay.nodes;
  const nodes = new Float32Array(NX * NY * az.nodes);
  for (let i = 0; i < nodes.length; i++) nodes[i] = rng.uniform(-1, 1);
  const field = out ?? new Float32Array(grid.voxels);
  let v = 0;
  for (let z = 0; z < Z; z++) {
    const kz = az.i0[z]!;
    const wz = az.w[z]!;
    for (let y = 0; y < Y; y++) {
      const ky = ay.i0[y]!;
      const wy = ay.w[y]!;
      const b00 = (kz * NY + ky) * NX;
      const b01 = (kz * NY + ky + 1) * NX;
      const b10 = ((kz + 1) * NY + ky) * NX;
      const b11 = ((kz + 1) * NY + ky + 1) * NX;
      for (let x = 0; x < X; x++, v++) {
        const kx = ax.i0[x]!;
        const wx = ax.w[x]!;
        const c00 = nodes[b00 + kx]! + wx * (nodes[b00 + kx + 1]! - nodes[b00 + kx]!);
        const c01 = nodes[b01 + kx]! + wx * (nodes[b01 + kx + 1]! - nodes[b01 + kx]!);
        const c10 = nodes[b10 + kx]! + wx * (nodes[b10 + kx + 1]! - nodes[b10 + kx]!);
        const c11 = nodes[b11 + kx]! + wx * (nodes[b11 + kx + 1]! - nodes[b11 + kx]!);
        const c0 = c00 + wy * (c01 - c00);
        const c1 = c10 + wy * (c11 - c10);
        field[v] = c0 + wz * (c1 - c0);
      }
    }
  }
  return field;
}

/** Sum of `octaves` fields, each half the feature size and half the amplitude of the last. */
export function fractalNoise(rng: Rng, grid: SamplingGrid, featureMm: number, octaves: number): Float32Array {
  const sum = smoothNoise(rng, grid, featureMm);
  const layer = new Float32Array(grid.voxels);
  let amp = 1;
  let total = 1;
  for (let o = 1; o < octaves; o++) {
    amp *= 0.5;
    total += amp;
    smoothNoise(rng, grid, featureMm / 2 ** o, layer);
    for (let i = 0; i < sum.length; i++) sum[i]! += amp * layer[i]!;
  }
  for (let i = 0; i < sum.length; i++) sum[i]! /= total;
  return sum;
}
