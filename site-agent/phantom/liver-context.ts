/**
 * The liver phantom's context variant. Below the right lobe run two tubes along z with the
 * liver's attenuation and texture: one is an inferior tongue of the liver (a Riedel-like lobe,
 * label 1) that joins the liver above it; the other is a bowel loop of the same density
 * (collapsed, in the portal-venous phase: background) that stops a few millimetres of fat below
 * the liver. Both are drawn by the same code from the same distribution (column under the right
 * lobe, radius, lower end) and a coin flip decides which one joins the liver. Far below the liver
 * — more than a slab — nothing inside a 16-voxel slab tells liver from bowel: only following the
 * tube up to the liver does, as a radiologist scrolls.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Rng } from './prng.ts';
import type { SamplingGrid } from './grid.ts';
import { CONTEXT_ROLE, tubeShape, tubeVoxels, type Tube } from './context.ts';

export const LIVER_CONTEXT = {
  /** Tube columns, fractions of the body's semi-axes: under the right lobe, in front of the right kidney. */
  columnX: [0.0, 0.75] as const,
  columnY: [-0.1, 0.45] as const,
  /** Tube radius, fraction of the body's x semi-axis. */
  radius: [0.11, 0.15] as const,
  /** How far both tubes reach below the liver, fraction of the z half-extent; never below this floor. */
  reach: [0.5, 0.75] as const,
  floor: -0.96,
  /** Fat between the look-alike's upper end and the liver, fraction of the z half-extent. */
  gap: [0.08, 0.14] as const,
  /** Shortest look-alike, fraction of the z half-extent. */
  minLength: 0.3,
  maxTries: 50,
} as const;

export interface LiverRegions {
  region: Uint8Array;
  /** Region codes of liver.ts: where tubes may go, the liver, and other organs. */
  cavity: number;
  liver: number;
  organ: number;
}

export interface LiverTubeFrame {
  /** Body semi-axes and centre (mm). */
  bx: number;
  by: number;
  bodyCy: number;
  /** Half-extent along z (anatomy units, as the rest of the generator sizes things). */
  hz: number;
}

interface Candidate {
  tube: Tube;
  /** The liver's lowest point above the tube's column (mm). */
  liverBottom: number;
  gap: number;
}

export interface LiverContextFacts {
  tongues: number;
  lookalikes: number;
  tongueVoxels: number;
  lookalikeVoxels: number;
}

/** Lowest z (mm) of a liver voxel within `radius` of column (x, y), or null when none. */
function liverBottomAt(grid: SamplingGrid, r: LiverRegions, x: number, y: number, radius: number): number | null {
  const [X, Y, Z] = grid.shape;
  const [mx, my, mz] = grid.mm;
  for (let z = 0; z < Z; z++) {
    for (let j = 0; j < Y; j++) {
      const dy = my[j]! - y;
      for (let i = 0; i < X; i++) {
        const dx = mx[i]! - x;
        if (dx * dx + dy * dy <= radius * radius && r.region[(z * Y + j) * X + i] === r.liver) return mz[z]!;
      }
    }
  }
  return null;
}

/** A tube under the liver: its column, radius, reach below the liver and gap; its upper end depends on its role. */
function drawCandidate(rng: Rng, grid: SamplingGrid, r: LiverRegions, f: LiverTubeFrame): Candidate | null {
  const L = LIVER_CONTEXT;
  const x = rng.uniform(L.columnX[0], L.columnX[1]) * f.bx;
  const y = f.bodyCy + rng.uniform(L.columnY[0], L.columnY[1]) * f.by;
  const radius = rng.uniform(L.radius[0], L.radius[1]) * f.bx;
  // Straight tubes: the liver bottom is looked up over one column.
  const shape = { ...tubeShape(rng, radius, 0.4 * f.hz), driftX: 0, driftY: 0 };
  const reach = rng.uniform(L.reach[0], L.reach[1]) * f.hz;
  const gap = rng.uniform(L.gap[0], L.gap[1]) * f.hz;
  const liverBottom = liverBottomAt(grid, r, x, y, radius);
  if (liverBottom === null) return null;
  const lower = Math.max(L.floor * f.hz, liverBottom - reach);
  // Symmetric conditions (either role could follow): liver above, and room below it for the look-alike.
  if (liverBottom - gap - lower < L.minLength * f.hz) return null;
  return { tube: { ...shape, x, y, zFrom: lower, zTo: liverBottom }, liverBottom, gap };
}

/**
 * Two candidates, apart in-plane, then a coin flip: the tongue's upper end reaches a radius into
 * the liver (so they join), the look-alike's stops `gap` below it.
 */
export function placeLiverTubes(rng: Rng, grid: SamplingGrid, r: LiverRegions, f: LiverTubeFrame): { tongue: Tube; lookalike: Tube } | null {
  for (let tries = 0; tries < LIVER_CONTEXT.maxTries; tries++) {
    const a = drawCandidate(rng, grid, r, f);
    const b = drawCandidate(rng, grid, r, f);
    if (!a || !b) continue;
    if (Math.hypot(a.tube.x - b.tube.x, a.tube.y - b.tube.y) < (a.tube.radius + b.tube.radius) * (1 + 0.15) + grid.spacing[0]) continue;
    const [t, l] = rng.bernoulli(0.5) ? [a, b] : [b, a];
    return {
      tongue: { ...t.tube, zTo: t.liverBottom + 1.5 * t.tube.radius },
      lookalike: { ...l.tube, zTo: l.liverBottom - l.gap },
    };
  }
  return null;
}

/**
 * Marks the landmark (the liver so far), then paints both tubes with the liver's attenuation into
 * intra-abdominal fat and bowel only: the tongue becomes liver, the look-alike another organ.
 * The caller adds the liver texture to the look-alike as to the liver (map role LOOKALIKE).
 */
export function paintLiverTubes(grid: SamplingGrid, hu: Float32Array, r: LiverRegions, map: Uint8Array, tubes: { tongue: Tube; lookalike: Tube } | null, liverHu: number): LiverContextFacts {
  for (let v = 0; v < r.region.length; v++) if (r.region[v] === r.liver) map[v] = CONTEXT_ROLE.landmark;
  if (!tubes) return { tongues: 0, lookalikes: 0, tongueVoxels: 0, lookalikeVoxels: 0 };
  const paint = (tube: Tube, regionValue: number, role: number): number => {
    const idx = tubeVoxels(grid, tube);
    let n = 0;
    for (let k = 0; k < idx.length; k++) {
      const v = idx[k]!;
      if (r.region[v] !== r.cavity) continue;
      hu[v] = liverHu;
      r.region[v] = regionValue;
      map[v] = role;
      n++;
    }
    return n;
  };
  const tongueVoxels = paint(tubes.tongue, r.liver, CONTEXT_ROLE.connected);
  const lookalikeVoxels = paint(tubes.lookalike, r.organ, CONTEXT_ROLE.lookalike);
  return { tongues: 1, lookalikes: 1, tongueVoxels, lookalikeVoxels };
}
