/**
 * Gliomas of the brain phantom: placement inside the brain and painting as nested shells —
 * necrotic/non-enhancing core (label 2) inside an enhancing rim (3) inside oedema (1). Shared by
 * the standard brain phantom (brain.ts) and its context variant (brain-context.ts).
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Rng } from './prng.ts';
import type { SamplingGrid } from './grid.ts';
import { blobVoxels, randomBlob, type Vec3 } from './blob.ts';

/** Tissue classes used to paint intensities (labels 1–3 map to Edema, Core, Enhancing). */
export const enum Tissue {
  Outside = 0,
  Scalp,
  Skull,
  Csf,
  Brain,
  Edema,
  Core,
  Enhancing,
}

export interface Tumour {
  centre: Vec3;
  /** Oedema radii in mm. */
  radii: Vec3;
}

/** Roughness of the oedema blob: its surface reaches up to (1 + this) × its radii. */
export const EDEMA_ROUGHNESS = 0.3;

/**
 * Place one tumour: size relative to the brain's semi-axes (so it stays proportionate on any
 * grid), centre far enough inside that the whole oedema stays in the brain.
 */
export function placeTumour(rng: Rng, brainCentre: Vec3, brainAxes: Vec3, tumourScale: number): Tumour {
  const jitter: Vec3 = [rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)];
  let frac = tumourScale * rng.uniform(0.3, 0.5);
  const maxJitter = Math.max(...jitter);
  // Keep the oedema's reach (in brain-normalised units) below 0.8 of the brain.
  frac = Math.min(frac, 0.8 / (maxJitter * (1 + EDEMA_ROUGHNESS)));
  const reach = frac * maxJitter * (1 + EDEMA_ROUGHNESS);
  const room = Math.max(0, 0.9 - reach);
  const dir = rng.unitVector();
  const t = room * Math.cbrt(rng.next());
  return {
    centre: [0, 1, 2].map((a) => brainCentre[a]! + dir[a]! * t * brainAxes[a]!) as Vec3,
    radii: [0, 1, 2].map((a) => frac * jitter[a]! * brainAxes[a]!) as Vec3,
  };
}

/**
 * Paint the shells into `labels`. `rimFraction` is the range of the enhancing rim's size
 * relative to the oedema: the standard phantom's [0.6, 0.8] leaves a thick oedema shell.
 */
export function paintTumour(rng: Rng, grid: SamplingGrid, labels: Uint8Array, tissue: Uint8Array, tumour: Tumour, rimFraction: readonly [number, number] = [0.6, 0.8]): void {
  const edema = randomBlob(rng, tumour.centre, tumour.radii, { roughness: EDEMA_ROUGHNESS, waves: 4, maxTilt: Math.PI });
  const rimFrac = rng.uniform(rimFraction[0], rimFraction[1]);
  const offset = (r: Vec3, f: number): Vec3 => [0, 1, 2].map((a) => rng.uniform(-f, f) * r[a]!) as Vec3;
  const t0 = offset(tumour.radii, 0.12);
  const rimCentre: Vec3 = [tumour.centre[0] + t0[0], tumour.centre[1] + t0[1], tumour.centre[2] + t0[2]];
  const rimRadii = tumour.radii.map((r) => r * rimFrac) as Vec3;
  const rim = randomBlob(rng, rimCentre, rimRadii, { roughness: 0.25, waves: 3, maxTilt: Math.PI });
  const coreFrac = rng.uniform(0.55, 0.75);
  const c0 = offset(rimRadii, 0.1);
  const core = randomBlob(rng, [rimCentre[0] + c0[0], rimCentre[1] + c0[1], rimCentre[2] + c0[2]], rimRadii.map((r) => r * coreFrac) as Vec3, {
    roughness: 0.2,
    waves: 3,
    maxTilt: Math.PI,
  });
  // Oedema only invades brain parenchyma and ventricles; each inner shell only where the outer one is.
  const e = blobVoxels(grid, edema).index;
  for (let n = 0; n < e.length; n++) {
    const i = e[n]!;
    if (labels[i] === 0 && (tissue[i] === Tissue.Brain || tissue[i] === Tissue.Csf)) labels[i] = 1;
  }
  const r = blobVoxels(grid, rim).index;
  for (let n = 0; n < r.length; n++) {
    const i = r[n]!;
    if (labels[i] === 1) labels[i] = 3;
  }
  const c = blobVoxels(grid, core).index;
  for (let n = 0; n < c.length; n++) {
    const i = c[n]!;
    if (labels[i] === 3) labels[i] = 2;
  }
}
