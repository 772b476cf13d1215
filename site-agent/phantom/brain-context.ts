/**
 * The brain phantom's context variant. Each hemisphere has a white-matter tract running along z
 * (superior–inferior, like the corticospinal tracts). One tract carries vasogenic oedema that
 * spreads from a tumour at one of its ends (label 1); the other is a tract-shaped FLAIR/T2
 * hyperintensity that no tumour caused (gliosis, small-vessel disease: background, as BraTS
 * annotators would label it). Both tracts are drawn by the same code from the same distribution
 * and painted with the oedema's intensities and texture; which of the two gets the tumour is a
 * coin flip. Far along a tract — more than a slab away from the tumour — nothing inside a
 * 16-voxel slab tells oedema from look-alike: only context along z does.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Rng } from './prng.ts';
import type { SamplingGrid } from './grid.ts';
import { blobVoxels, IDENTITY3, type Blob, type Vec3 } from './blob.ts';
import { dilateLabel, labelSet } from './morphology.ts';
import { CONTEXT_ROLE, tubeShape, tubeVoxels, type Tube } from './context.ts';
import { EDEMA_ROUGHNESS, Tissue, type Tumour } from './tumour.ts';

export const BRAIN_CONTEXT = {
  /** Head semi-axes as fractions of the half-extent (standard phantom 0.72, 0.78, 0.7): a tight field of view, as BraTS crops. */
  head: [0.88, 0.92, 0.9] as const,
  /** Enhancing rim relative to the oedema blob (standard [0.6, 0.8]): a thin shell, most oedema runs along the tract. */
  rimFraction: [0.78, 0.88] as const,
  /** Tumour oedema radii: in-plane and along z, fractions of the brain's semi-axes (times the site's tumour scale). */
  tumourInPlane: [0.26, 0.36] as const,
  tumourAlongZ: [0.2, 0.3] as const,
  /** Tract slots: |x| in fractions of the brain's x semi-axis, one per hemisphere; y likewise. */
  slotX: [0.38, 0.5] as const,
  slotY: [-0.2, 0.2] as const,
  /** Tract radius, fraction of the brain's smaller in-plane semi-axis. */
  tractRadius: [0.2, 0.26] as const,
  /** Height of the tract's tumour end (either sign) and the tract's length from there, fractions of the brain's z semi-axis. */
  tumourEnd: [0.4, 0.65] as const,
  tractLength: [1.1, 1.5] as const,
  /** Redraws of the pair when the look-alike would touch the tumour. */
  maxTries: 20,
} as const;

/** One hemisphere's tract and the tumour that would sit at its end (painted only for the real one). */
export interface TractCandidate {
  tumour: Tumour;
  tube: Tube;
}

export interface BrainContextFacts {
  tracts: number;
  lookalikes: number;
  /** Tract voxels labelled oedema outside the tumour's own oedema blob. */
  tractVoxels: number;
  lookalikeVoxels: number;
}

/** The candidate of one hemisphere (side ±1): tract slot, tumour end, length, and the tumour at that end. */
function drawCandidate(rng: Rng, side: number, brainCentre: Vec3, brainAxes: Vec3, tumourScale: number): TractCandidate {
  const B = BRAIN_CONTEXT;
  const x = brainCentre[0] + side * rng.uniform(B.slotX[0], B.slotX[1]) * brainAxes[0];
  const y = brainCentre[1] + rng.uniform(B.slotY[0], B.slotY[1]) * brainAxes[1];
  const up = rng.bernoulli(0.5);
  const end = brainCentre[2] + (up ? 1 : -1) * rng.uniform(B.tumourEnd[0], B.tumourEnd[1]) * brainAxes[2];
  const length = rng.uniform(B.tractLength[0], B.tractLength[1]) * brainAxes[2];
  const limit = 0.92 * brainAxes[2];
  const far = up ? Math.max(brainCentre[2] - limit, end - length) : Math.min(brainCentre[2] + limit, end + length);
  const radius = rng.uniform(B.tractRadius[0], B.tractRadius[1]) * Math.min(brainAxes[0], brainAxes[1]);
  const shape = tubeShape(rng, radius, 0.5 * brainAxes[2]);
  const zFrom = Math.min(end, far);
  // The axis passes through (x, y) at the tumour end.
  const tube: Tube = { ...shape, x: x - shape.driftX * (end - zFrom), y: y - shape.driftY * (end - zFrom), zFrom, zTo: Math.max(end, far) };
  const fxy = tumourScale * rng.uniform(B.tumourInPlane[0], B.tumourInPlane[1]);
  const fz = tumourScale * rng.uniform(B.tumourAlongZ[0], B.tumourAlongZ[1]);
  const tumour: Tumour = { centre: [x, y, end], radii: [fxy * brainAxes[0], fxy * brainAxes[1], fz * brainAxes[2]] };
  return { tumour, tube };
}

/** Whether `tube` comes within one voxel of the largest oedema blob `paintTumour` can draw for `tumour`. */
function touches(grid: SamplingGrid, tumour: Tumour, tube: Tube): boolean {
  // An ellipsoid with the radii scaled by the roughness encloses every blob of that tumour.
  const bound: Blob = { centre: tumour.centre, radii: tumour.radii.map((v) => v * (1 + EDEMA_ROUGHNESS)) as Vec3, axes: IDENTITY3, waves: new Float64Array(0), amps: new Float64Array(0) };
  const blob = new Uint8Array(grid.voxels);
  const idx = blobVoxels(grid, bound).index;
  for (let n = 0; n < idx.length; n++) blob[idx[n]!] = 1;
  dilateLabel(blob, grid.shape, labelSet(1), labelSet(0), 2);
  const t = tubeVoxels(grid, tube);
  for (let n = 0; n < t.length; n++) if (blob[t[n]!]) return true;
  return false;
}

/**
 * One candidate per hemisphere, then a coin flip for which one gets its tumour painted. A pair
 * whose look-alike would touch the tumour is redrawn (the touching would make it "connected").
 */
export function placeTractCandidates(rng: Rng, grid: SamplingGrid, brainCentre: Vec3, brainAxes: Vec3, tumourScale: number): { real: TractCandidate[]; lookalikes: TractCandidate[] } {
  let pair: [TractCandidate, TractCandidate] = [drawCandidate(rng, -1, brainCentre, brainAxes, tumourScale), drawCandidate(rng, 1, brainCentre, brainAxes, tumourScale)];
  let realSide = rng.int(0, 1);
  for (let tries = 1; tries < BRAIN_CONTEXT.maxTries && touches(grid, pair[realSide]!.tumour, pair[1 - realSide]!.tube); tries++) {
    pair = [drawCandidate(rng, -1, brainCentre, brainAxes, tumourScale), drawCandidate(rng, 1, brainCentre, brainAxes, tumourScale)];
    realSide = rng.int(0, 1);
  }
  return { real: [pair[realSide]!], lookalikes: [pair[1 - realSide]!] };
}

/**
 * After the tumours and their shell closure: mark the landmarks (everything labelled so far), then
 * paint each real tract as oedema and each look-alike as oedema-looking tissue with label 0, both
 * only into brain parenchyma and ventricles, as oedema spreads. A look-alike never takes a voxel
 * within reach of a landmark (in the rare pair that kept touching after every redraw).
 */
export function paintTracts(grid: SamplingGrid, labels: Uint8Array, tissue: Uint8Array, map: Uint8Array, real: readonly TractCandidate[], lookalikes: readonly TractCandidate[]): BrainContextFacts {
  for (let i = 0; i < labels.length; i++) if (labels[i] !== 0) map[i] = CONTEXT_ROLE.landmark;
  const parenchyma = (i: number) => tissue[i] === Tissue.Brain || tissue[i] === Tissue.Csf;
  let tractVoxels = 0;
  for (const c of real) {
    const idx = tubeVoxels(grid, c.tube);
    for (let n = 0; n < idx.length; n++) {
      const i = idx[n]!;
      if (labels[i] !== 0 || !parenchyma(i)) continue;
      labels[i] = 1;
      map[i] = CONTEXT_ROLE.connected;
      tractVoxels++;
    }
  }
  const near = new Uint8Array(labels.length);
  for (let i = 0; i < labels.length; i++) near[i] = labels[i] !== 0 ? 1 : 0;
  dilateLabel(near, grid.shape, labelSet(1), labelSet(0), 2);
  let lookalikeVoxels = 0;
  for (const c of lookalikes) {
    const idx = tubeVoxels(grid, c.tube);
    for (let n = 0; n < idx.length; n++) {
      const i = idx[n]!;
      if (near[i] || !parenchyma(i)) continue;
      tissue[i] = Tissue.Edema;
      map[i] = CONTEXT_ROLE.lookalike;
      lookalikeVoxels++;
    }
  }
  return { tracts: real.length, lookalikes: lookalikes.length, tractVoxels, lookalikeVoxels };
}
