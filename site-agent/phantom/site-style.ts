/**
 * A "hospital": its scanner (intensity scale and offset, bias field, noise, voxel spacing,
 * storage orientation, patient positioning) and its case mix. Derived deterministically from
 * an integer K: K = 0..3 are four fixed archetypes; larger K jitter archetype K mod 4, so any
 * number of distinct, realistically non-IID sites can be simulated.
 */
import { Rng } from './prng.ts';
import type { Vec3 } from './blob.ts';

export interface MriScanner {
  /** Voxel spacing in mm. */
  spacing: Vec3;
  /** Arbitrary-unit scale per modality (FLAIR, T1w, t1gd, T2w): MRI has no absolute units. */
  scale: [number, number, number, number];
  /** Offset added inside the head, in the same arbitrary units. */
  offset: number;
  /** Strength of the smooth multiplicative bias field (log-amplitude). */
  biasStrength: number;
  /** Rician noise sigma as a fraction of the white-matter intensity. */
  noise: number;
}

export interface CtScanner {
  spacing: Vec3;
  /** HU calibration error: stored = scale·HU + offset. */
  scale: number;
  offset: number;
  /** Smooth multiplicative field on attenuation (beam hardening / cupping), log-amplitude. */
  cupping: number;
  /** Gaussian noise sigma in HU. */
  noiseHu: number;
  /** Extra liver/vessel enhancement from this site's contrast timing, in HU. */
  contrastHu: number;
}

export interface CaseMix {
  /** Multiplies tumour (oedema) size: some sites see small early tumours, others large ones. */
  tumourScale: number;
  /** Probability that a brain case has a second tumour. */
  secondTumourProbability: number;
  /** Multiplies liver size. */
  liverScale: number;
  /** Lesions per liver case are drawn from 0..maxLesions. */
  maxLesions: number;
  /** Lesion radius range in mm (log-uniform) on a 64-voxel-wide grid; scaled with the anatomy on other grids. */
  lesionRadiusMm: [number, number];
}

export interface SiteStyle {
  k: number;
  /** Archetype the style derives from (K mod 4). */
  archetype: number;
  /** Which voxel axes are stored reversed relative to RAS (data and affine flipped together). */
  flips: [boolean, boolean, boolean];
  /** Axis codes of the stored voxel order, e.g. 'RAS', 'LPS' (what nibabel's aff2axcodes reports, ignoring the small tilt). */
  orientation: string;
  /** Patient tilt: rotation of the voxel grid in world space. */
  rotationAxis: Vec3;
  rotationDeg: number;
  /** World position (mm) of the volume centre. */
  origin: Vec3;
  mri: MriScanner;
  ct: CtScanner;
  caseMix: CaseMix;
}

type Archetype = Omit<SiteStyle, 'k' | 'archetype' | 'orientation'>;

const ARCHETYPES: readonly Archetype[] = [
  {
    flips: [false, false, false],
    rotationAxis: [0, 0, 1],
    rotationDeg: 0,
    origin: [0, 0, 0],
    mri: { spacing: [1, 1, 1], scale: [1000, 1000, 1000, 1000], offset: 0, biasStrength: 0.1, noise: 0.03 },
    ct: { spacing: [0.9, 0.9, 1], scale: 1, offset: 0, cupping: 0.01, noiseHu: 8, contrastHu: 30 },
    caseMix: { tumourScale: 1, secondTumourProbability: 0.3, liverScale: 1, maxLesions: 4, lesionRadiusMm: [2, 7] },
  },
  {
    flips: [true, true, false],
    rotationAxis: [0.1, 0.2, 1],
    rotationDeg: 3,
    origin: [3, -12, 20],
    mri: { spacing: [0.9, 0.9, 1.5], scale: [380, 520, 610, 450], offset: 12, biasStrength: 0.3, noise: 0.06 },
    ct: { spacing: [0.8, 0.8, 2], scale: 1.02, offset: -6, cupping: 0.025, noiseHu: 16, contrastHu: 15 },
    caseMix: { tumourScale: 0.72, secondTumourProbability: 0.55, liverScale: 1.12, maxLesions: 5, lesionRadiusMm: [1.5, 4] },
  },
  {
    flips: [true, false, false],
    rotationAxis: [1, 0, 0.2],
    rotationDeg: 5,
    origin: [-8, 15, -30],
    mri: { spacing: [1.2, 1.2, 1.2], scale: [2400, 1800, 2100, 2600], offset: 40, biasStrength: 0.2, noise: 0.045 },
    ct: { spacing: [0.95, 0.95, 1.25], scale: 0.98, offset: 4, cupping: 0.015, noiseHu: 11, contrastHu: 0 },
    caseMix: { tumourScale: 1.25, secondTumourProbability: 0.15, liverScale: 0.88, maxLesions: 3, lesionRadiusMm: [3, 9] },
  },
  {
    flips: [false, true, true],
    rotationAxis: [0.3, 1, 0],
    rotationDeg: -4,
    origin: [0, 0, -50],
    mri: { spacing: [0.95, 0.95, 1.3], scale: [150, 210, 260, 180], offset: 5, biasStrength: 0.4, noise: 0.08 },
    ct: { spacing: [0.85, 0.85, 1.6], scale: 1, offset: 0, cupping: 0.02, noiseHu: 20, contrastHu: 20 },
    caseMix: { tumourScale: 0.9, secondTumourProbability: 0.4, liverScale: 1, maxLesions: 2, lesionRadiusMm: [2, 5] },
  },
];

export const SITE_ARCHETYPES = ARCHETYPES.length;

export function orientationCode(flips: readonly [boolean, boolean, boolean]): string {
  return (flips[0] ? 'L' : 'R') + (flips[1] ? 'P' : 'A') + (flips[2] ? 'I' : 'S');
}

function round(v: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** The scanner and case mix of site style `k` (integer ≥ 0). Same k, same style, always. */
export function siteStyle(k: number): SiteStyle {
  if (!Number.isSafeInteger(k) || k < 0) throw new RangeError(`site style must be an integer ≥ 0, got ${k}`);
  const archetype = k % ARCHETYPES.length;
  const base = structuredClone(ARCHETYPES[archetype]!) as Archetype;
  if (k >= ARCHETYPES.length) {
    // Same vendor family, different machine and population: jitter every knob.
    const rng = Rng.derive('phantom-site-style', k);
    const inPlane = rng.uniform(0.95, 1.08);
    const through = rng.uniform(0.9, 1.15);
    const jitterSpacing = (s: Vec3): Vec3 => [round(s[0] * inPlane), round(s[1] * inPlane), round(s[2] * through)];
    base.mri.spacing = jitterSpacing(base.mri.spacing);
    base.ct.spacing = jitterSpacing(base.ct.spacing);
    base.mri.scale = base.mri.scale.map((s) => round(s * rng.uniform(0.6, 1.6), 2)) as MriScanner['scale'];
    base.mri.offset = round(base.mri.offset * rng.uniform(0.5, 1.5) + rng.uniform(0, 10), 2);
    base.mri.biasStrength = round(base.mri.biasStrength * rng.uniform(0.7, 1.3));
    base.mri.noise = round(base.mri.noise * rng.uniform(0.8, 1.25));
    base.ct.scale = round(base.ct.scale * rng.uniform(0.985, 1.015));
    base.ct.offset = round(base.ct.offset + rng.uniform(-4, 4), 2);
    base.ct.cupping = round(base.ct.cupping * rng.uniform(0.7, 1.3));
    base.ct.noiseHu = round(base.ct.noiseHu * rng.uniform(0.8, 1.25), 2);
    base.ct.contrastHu = round(Math.max(0, base.ct.contrastHu + rng.uniform(-8, 8)), 2);
    base.rotationAxis = rng.unitVector().map((v) => round(v)) as Vec3;
    base.rotationDeg = round(base.rotationDeg + rng.uniform(-2, 2), 3);
    base.origin = base.origin.map((o) => round(o + rng.uniform(-20, 20), 2)) as Vec3;
    const mix = base.caseMix;
    mix.tumourScale = round(mix.tumourScale * rng.uniform(0.85, 1.15));
    mix.secondTumourProbability = round(Math.min(0.8, mix.secondTumourProbability * rng.uniform(0.7, 1.4)));
    mix.liverScale = round(mix.liverScale * rng.uniform(0.92, 1.08));
    mix.maxLesions = Math.max(1, Math.min(5, mix.maxLesions + rng.int(-1, 1)));
    mix.lesionRadiusMm = [round(mix.lesionRadiusMm[0] * rng.uniform(0.85, 1.15), 3), round(mix.lesionRadiusMm[1] * rng.uniform(0.85, 1.15), 3)];
  }
  return { k, archetype, orientation: orientationCode(base.flips), ...base };
}
