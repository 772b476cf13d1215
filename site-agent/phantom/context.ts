/**
 * Context phantoms (`patchfed phantom --context`, `--scale thesis-like`): volumes where a thin
 * slab loses information the thesis's full U-Net and cascade can use (README, "Context phantoms").
 *
 * Two ingredients shared by the brain and liver variants:
 * - a deep grid whose in-plane voxels are stretched, so anatomy keeps its proportions: a 32×32×160
 *   context volume is the standard phantom of a 160×160×160 grid sampled with 5× coarser in-plane
 *   voxels (the thesis's slab is thin along z, not in-plane, so z keeps the fine sampling);
 * - z-running tubes with identical local appearance, labelled by what they connect to far away:
 *   "connected" tubes join their landmark (a tumour, the liver) and carry the label, "look-alikes"
 *   are drawn by the same code from the same distribution and do not (background).
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Rng } from './prng.ts';
import { samplingGrid, voxelRange, type SamplingGrid } from './grid.ts';
import type { Vec3 } from './blob.ts';

/** The thesis's slab thickness (16 voxels along z) and the thesis-like grid: 16 of 160 = 10% (thesis: 16 of 155). */
export const THESIS_SLAB = 16;
export const THESIS_LIKE_SHAPE: readonly [number, number, number] = [32, 32, 160];

/**
 * Per-voxel role in a context phantom (PhantomCase.contextMap), for tests and documentation:
 * LANDMARK — what decides the label (the tumour with its oedema shell; the liver's main body),
 * CONNECTED — a tube joined to its landmark (labelled: oedema, liver),
 * LOOKALIKE — a tube of identical appearance not joined to any landmark (background).
 */
export const CONTEXT_ROLE = { none: 0, landmark: 1, connected: 2, lookalike: 3 } as const;

export interface ContextGrid {
  grid: SamplingGrid;
  spacing: Vec3;
  /** In-plane voxel stretch (≥ 1): Z / max(X, Y). */
  stretch: number;
}

/**
 * The sampling grid of a context phantom: in-plane spacing × stretch and the half-extent of the
 * virtual cubic grid, so anatomy sized relative to `half` keeps its proportions (see grid.ts).
 */
export function contextGrid(shape: [number, number, number], spacing: Vec3): ContextGrid {
  const stretch = Math.max(1, shape[2] / Math.max(shape[0], shape[1]));
  const s: Vec3 = [spacing[0] * stretch, spacing[1] * stretch, spacing[2]];
  return { grid: samplingGrid(shape, s, [(shape[0] * stretch) / 2, (shape[1] * stretch) / 2, shape[2] / 2]), spacing: s, stretch };
}

/** A tube running along z, with rounded ends, a slight tilt and a radius that wobbles along z. */
export interface Tube {
  /** Axis position in-plane (mm) at z = zFrom. */
  x: number;
  y: number;
  /** Axis drift in x and y per mm of z. */
  driftX: number;
  driftY: number;
  /** z range of the tube (mm), caps included; zFrom < zTo. */
  zFrom: number;
  zTo: number;
  radius: number;
  wobble: number;
  wavelength: number;
  phase: number;
}

/**
 * Random shape parameters of a tube of nominal `radius` (mm); the caller sets where it runs.
 * Every tube of a phantom, labelled or look-alike, draws these in the same order from the same
 * ranges: local appearance cannot tell them apart.
 */
export function tubeShape(rng: Rng, radius: number, wavelength: number): Pick<Tube, 'driftX' | 'driftY' | 'radius' | 'wobble' | 'wavelength' | 'phase'> {
  return {
    driftX: rng.uniform(-0.06, 0.06),
    driftY: rng.uniform(-0.06, 0.06),
    radius,
    wobble: rng.uniform(0, 0.15),
    wavelength: wavelength * rng.uniform(0.7, 1.3),
    phase: rng.uniform(0, 2 * Math.PI),
  };
}

/** Linear indices (x fastest, increasing) of the voxels whose centre lies inside the tube. */
export function tubeVoxels(grid: SamplingGrid, tube: Tube): Int32Array {
  const [X, Y] = grid.shape;
  const [mx, my, mz] = grid.mm;
  const [z0, z1] = voxelRange(grid, 2, (tube.zFrom + tube.zTo) / 2, (tube.zTo - tube.zFrom) / 2);
  const out: number[] = [];
  for (let z = z0; z <= z1; z++) {
    const t = mz[z]!;
    if (t < tube.zFrom || t > tube.zTo) continue;
    const r = tube.radius * (1 + tube.wobble * Math.sin((2 * Math.PI * (t - tube.zFrom)) / tube.wavelength + tube.phase));
    // Rounded ends: a hemisphere-like cap of the tube's radius.
    const toEnd = Math.min(t - tube.zFrom, tube.zTo - t);
    const rr = toEnd >= r ? r : Math.sqrt(Math.max(0, r * r - (r - toEnd) * (r - toEnd)));
    if (rr <= 0) continue;
    const cx = tube.x + tube.driftX * (t - tube.zFrom);
    const cy = tube.y + tube.driftY * (t - tube.zFrom);
    const [x0, x1] = voxelRange(grid, 0, cx, rr);
    const [y0, y1] = voxelRange(grid, 1, cy, rr);
    const r2 = rr * rr;
    for (let y = y0; y <= y1; y++) {
      const dy = my[y]! - cy;
      const row = (z * Y + y) * X;
      for (let x = x0; x <= x1; x++) {
        const dx = mx[x]! - cx;
        if (dx * dx + dy * dy <= r2) out.push(row + x);
      }
    }
  }
  return Int32Array.from(out);
}

/**
 * Voxels of the connected tube and of the look-alike in slices from which no slab of `slab`
 * voxels along z reaches a landmark voxel (x-fastest volume): where a slab holds no clue.
 */
export function beyondSlabVoxels(map: Uint8Array, shape: readonly [number, number, number], slab = THESIS_SLAB): { connected: number; lookalike: number } {
  const [X, Y, Z] = shape;
  const plane = X * Y;
  const landmark = new Uint8Array(Z);
  for (let v = 0; v < map.length; v++) if (map[v] === CONTEXT_ROLE.landmark) landmark[Math.floor(v / plane)] = 1;
  let connected = 0;
  let lookalike = 0;
  for (let z = 0; z < Z; z++) {
    let reach = false;
    for (let d = 1 - slab; d < slab && !reach; d++) reach = landmark[z + d] === 1;
    if (reach) continue;
    for (let v = z * plane; v < (z + 1) * plane; v++) {
      if (map[v] === CONTEXT_ROLE.connected) connected++;
      else if (map[v] === CONTEXT_ROLE.lookalike) lookalike++;
    }
  }
  return { connected, lookalike };
}

/** Fisher–Yates with the phantom's seeded stream: which candidates get the landmark. */
export function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
