/**
 * LiTS-like abdominal CT phantom in Hounsfield units (int16): body outline with subcutaneous fat
 * and muscle wall, spine and ribs, aorta and IVC, kidneys, spleen and stomach at intensities close
 * to liver's, a liver (label 1) with contrast-filled vessels, and 0–5 small low-contrast lesions
 * (label 2) that sit inside the liver.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { Rng } from './prng.ts';
import type { CaseMix, CtScanner } from './site-style.ts';
import { samplingGrid, voxelRange, type SamplingGrid } from './grid.ts';
import { blobVoxels, randomBlob, type Blob, type Vec3 } from './blob.ts';
import { fractalNoise, smoothNoise } from './smooth-noise.ts';
import { erode } from './morphology.ts';
import { flipAxes, siteGeometry } from './orientation.ts';
import { countLabels, type CaseFacts, type CaseKey, type PhantomCase } from './types.ts';
import { beyondSlabVoxels, CONTEXT_ROLE, contextGrid } from './context.ts';
import { paintLiverTubes, placeLiverTubes } from './liver-context.ts';

export const LIVER_MODALITIES = { '0': 'CT' } as const;
export const LIVER_LABELS = { '0': 'background', '1': 'liver', '2': 'cancer' } as const;

/** Nominal attenuation of each structure before the site's contrast timing, HU. */
export const LIVER_HU = {
  air: -1000,
  fat: -100,
  visceralFat: -90,
  muscle: 50,
  bowel: 30,
  bone: 700,
  marrow: 250,
  csf: 15,
  aorta: 170,
  ivc: 110,
  kidney: 65,
  renalSinus: -60,
  spleen: 55,
  stomachWall: 45,
  stomachFluid: 12,
  gas: -850,
  liver: 60,
  vessel: 130,
} as const;

/** Site contrast timing enhances organs by different fractions of its contrastHu. */
const ENHANCEMENT = { liver: 1, vessel: 2.5, aorta: 3, ivc: 2, kidney: 2, spleen: 1.1, stomachWall: 0.6 } as const;

/** Paints `value` into `hu` (and `regionValue` into `region`) inside `blob`, only over voxels of `onlyRegion` when given. */
function fill(grid: SamplingGrid, hu: Float32Array, region: Uint8Array, blob: Blob, value: number, regionValue: number, onlyRegion?: number): void {
  const idx = blobVoxels(grid, blob).index;
  for (let n = 0; n < idx.length; n++) {
    const i = idx[n]!;
    if (onlyRegion !== undefined && region[i] !== onlyRegion) continue;
    hu[i] = value;
    region[i] = regionValue;
  }
}

/** Abdominal regions: where organs may go and what the label is. */
const enum Region {
  Outside = 0,
  Wall, // fat, muscle, bone: never organ
  Cavity, // intra-abdominal fat and bowel
  Organ, // other organs and big vessels
  Liver,
}

/** A straight tube (vessel) from a to b with radius r, painted into the liver only. */
function paintVessel(grid: SamplingGrid, hu: Float32Array, region: Uint8Array, a: Vec3, b: Vec3, r: number, value: number): void {
  const [X, Y] = grid.shape;
  const [mx, my, mz] = grid.mm;
  const d: Vec3 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
  const len2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] || 1;
  const r2 = r * r;
  const [x0, x1] = voxelRange(grid, 0, (a[0] + b[0]) / 2, Math.abs(d[0]) / 2 + r);
  const [y0, y1] = voxelRange(grid, 1, (a[1] + b[1]) / 2, Math.abs(d[1]) / 2 + r);
  const [z0, z1] = voxelRange(grid, 2, (a[2] + b[2]) / 2, Math.abs(d[2]) / 2 + r);
  for (let z = z0; z <= z1; z++) {
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const i = (z * Y + y) * X + x;
        if (region[i] !== Region.Liver) continue;
        const px = mx[x]! - a[0];
        const py = my[y]! - a[1];
        const pz = mz[z]! - a[2];
        const t = Math.min(1, Math.max(0, (px * d[0] + py * d[1] + pz * d[2]) / len2));
        const ex = px - t * d[0];
        const ey = py - t * d[1];
        const ez = pz - t * d[2];
        if (ex * ex + ey * ey + ez * ez <= r2) hu[i] = value;
      }
    }
  }
}

/** One case being painted: the grid, the attenuation and region volumes, the anatomy RNG and the site's CT. */
interface Abdomen {
  grid: SamplingGrid;
  shape: [number, number, number];
  hu: Float32Array;
  region: Uint8Array;
  /** Every anatomical draw comes from this one stream, in a fixed order: the painters below run in sequence. */
  rng: Rng;
  ct: CtScanner;
}

/** Body outline in mm: semi-axes, centre, and the spine's position and vertebral radius. */
interface BodyFrame {
  bx: number;
  by: number;
  bodyCy: number;
  spineY: number;
  vr: number;
}

/** `base` HU enhanced by the site's contrast timing (factor `f` of its contrastHu). */
function enhanced(a: Abdomen, base: number, f: number): number {
  return base + f * a.ct.contrastHu;
}

export function generateLiverCase(key: CaseKey, shape: [number, number, number]): PhantomCase {
  const { style, seed, caseIndex } = key;
  const ct = style.ct;
  const context = key.context ? contextGrid(shape, ct.spacing) : null;
  const grid = context ? context.grid : samplingGrid(shape, ct.spacing);
  const a: Abdomen = {
    grid,
    shape,
    hu: new Float32Array(grid.voxels).fill(LIVER_HU.air),
    region: new Uint8Array(grid.voxels),
    rng: Rng.derive('phantom', 'liver', seed, style.k, caseIndex, 'anatomy'),
    ct,
  };
  const body = paintBodyWall(a);
  paintBowel(a);
  paintSpine(a, body);
  paintNeighbourOrgans(a, body);
  const liver = paintLiver(a, body, style.caseMix.liverScale);
  paintGreatVessels(a, body);
  const contextMap = context ? new Uint8Array(grid.voxels) : null;
  const contextFacts = contextMap ? paintContext(a, body, contextMap, liver.hu, Rng.derive('phantom', 'liver', seed, style.k, caseIndex, 'context')) : undefined;
  const { labels, tex } = labelLiver(a, contextMap);
  const lesions = paintLesions(a, { labels, tex, contextMap, liver, caseMix: style.caseMix });
  const image = scan(a, Rng.derive('phantom', 'liver', seed, style.k, caseIndex, 'noise'));

  const [X, Y, Z] = shape;
  const flips = style.flips;
  return {
    image: flipAxes(image, [X, Y, Z], flips),
    imageDims: [X, Y, Z],
    imageDatatype: 'int16',
    label: flipAxes(labels, [X, Y, Z], flips),
    labelDims: [X, Y, Z],
    geometry: siteGeometry(shape, context ? context.spacing : ct.spacing, style),
    facts: { lesions, labelVoxels: countLabels(labels, 3), ...(contextFacts ? { context: contextFacts } : {}) },
    ...(contextMap ? { contextMap: flipAxes(contextMap, [X, Y, Z], flips) } : {}),
  };
}

/**
 * Body: an elliptic cylinder along z whose outline wobbles with angle and slowly with z, with
 * subcutaneous fat, the muscle wall and (upper abdomen) ribs; inside it the cavity.
 * Patient right = +x, anterior = +y (RAS); the spine is posterior (−y).
 */
function paintBodyWall(a: Abdomen): BodyFrame {
  const { grid, hu, region, rng } = a;
  const [X, Y, Z] = a.shape;
  const H = grid.half;
  const [mx, my, mz] = grid.mm;
  const bodyScale = rng.uniform(0.88, 1);
  const bx = 0.82 * H[0] * bodyScale;
  const by = 0.62 * H[1] * bodyScale;
  const bodyCy = rng.uniform(-0.03, 0.03) * H[1];
  const wob = [rng.uniform(0, 2 * Math.PI), rng.uniform(0, 2 * Math.PI), rng.uniform(0.02, 0.05), rng.uniform(0.01, 0.03)];
  const zWave = [rng.uniform(0, 0.04), rng.uniform(0.5, 1.5) / H[2], rng.uniform(0, 2 * Math.PI)];
  const fatDepth = rng.uniform(0.06, 0.14); // subcutaneous fat thickness, fraction of radius
  const wallFrom = 1 - fatDepth;
  const cavityFrom = wallFrom - 0.07;
  const ribPhase = rng.uniform(0, 2 * Math.PI);
  let i = 0;
  for (let z = 0; z < Z; z++) {
    const zs = 1 + zWave[0]! * Math.sin(zWave[1]! * mz[z]! + zWave[2]!);
    const upper = mz[z]! > -0.1 * H[2]; // ribs cover the upper abdomen
    for (let y = 0; y < Y; y++) {
      const ny = (my[y]! - bodyCy) / (by * zs);
      for (let x = 0; x < X; x++, i++) {
        const nx = mx[x]! / (bx * zs);
        const ang = Math.atan2(ny, nx);
        const outline = 1 + wob[2]! * Math.sin(2 * ang + wob[0]!) + wob[3]! * Math.sin(3 * ang + wob[1]!);
        // The back is flatter than the belly.
        const nyb = ny < 0 ? ny * 1.12 : ny;
        const rho = Math.sqrt(nx * nx + nyb * nyb) / outline;
        if (rho >= 1) continue;
        if (rho >= wallFrom) {
          hu[i] = LIVER_HU.fat;
          region[i] = Region.Wall;
        } else if (rho >= cavityFrom) {
          const rib = upper && Math.sin(11 * ang + ribPhase + 0.15 * mz[z]!) > 0.55 && ny > -0.8;
          hu[i] = rib ? LIVER_HU.bone : LIVER_HU.muscle;
          region[i] = Region.Wall;
        } else {
          region[i] = Region.Cavity;
        }
      }
    }
  }
  return { bx, by, bodyCy, spineY: bodyCy - by * 0.62, vr: 0.13 * by };
}

/** Mean half-extent of the grid (mm): the scale of noise features. */
function meanHalf(grid: SamplingGrid): number {
  const H = grid.half;
  return (H[0] + H[1] + H[2]) / 3;
}

/** Intra-abdominal fat mixed with bowel loops (smooth noise thresholded into blobs). */
function paintBowel(a: Abdomen): void {
  const { grid, hu, region } = a;
  const bowel = fractalNoise(a.rng, grid, 0.3 * meanHalf(grid), 2);
  for (let v = 0; v < grid.voxels; v++) {
    if (region[v] !== Region.Cavity) continue;
    const b = bowel[v]!;
    hu[v] = b > 0.1 ? (b > 0.45 ? LIVER_HU.gas : LIVER_HU.bowel) : LIVER_HU.visceralFat;
  }
}

/** Spine (vertebral body, marrow, canal) and back muscles, posterior midline, full height. */
function paintSpine(a: Abdomen, { spineY, vr }: BodyFrame): void {
  const { hu, region } = a;
  const [X, Y, Z] = a.shape;
  const [mx, my] = a.grid.mm;
  for (let z = 0, v = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      for (let x = 0; x < X; x++, v++) {
        if (region[v] === Region.Outside) continue;
        const ax = mx[x]!;
        const ay = my[y]! - spineY;
        const ac = ay + 1.5 * vr;
        const d = Math.sqrt(ax * ax + ay * ay);
        const canal = Math.sqrt(ax * ax + ac * ac);
        if (d < vr) {
          hu[v] = d > 0.75 * vr ? LIVER_HU.bone : LIVER_HU.marrow;
          region[v] = Region.Wall;
        } else if (canal < 0.45 * vr) {
          hu[v] = LIVER_HU.csf;
          region[v] = Region.Wall;
        } else if (canal < 0.8 * vr) {
          hu[v] = LIVER_HU.bone;
          region[v] = Region.Wall;
        } else if (Math.abs(mx[x]!) < 2.6 * vr && my[y]! < spineY + 0.2 * vr && region[v] === Region.Cavity) {
          hu[v] = LIVER_HU.muscle; // psoas / paraspinal
          region[v] = Region.Wall;
        }
      }
    }
  }
}

/** Organs near the liver (kidneys, spleen, stomach), with intensities close to it. Sizes are fractions of the body. */
function paintNeighbourOrgans(a: Abdomen, { bx, by, bodyCy, spineY }: BodyFrame): void {
  const { grid, hu, region, rng } = a;
  const Hz = grid.half[2];
  const organ = (c: Vec3, r: Vec3, rough: number): Blob => randomBlob(rng, c, r, { roughness: rough, waves: 3, maxTilt: 0.3 });
  for (const side of [-1, 1]) {
    const kc: Vec3 = [side * 0.45 * bx, spineY + 0.35 * by, rng.uniform(-0.45, -0.2) * Hz];
    const kidney = organ(kc, [0.12 * bx, 0.16 * by, 0.3 * Hz], 0.1);
    fill(grid, hu, region, kidney, enhanced(a, LIVER_HU.kidney, ENHANCEMENT.kidney), Region.Organ, Region.Cavity);
    const sinus = organ([kc[0] - side * 0.04 * bx, kc[1], kc[2]], [0.04 * bx, 0.06 * by, 0.14 * Hz], 0.1);
    fill(grid, hu, region, sinus, LIVER_HU.renalSinus, Region.Organ, Region.Organ);
  }
  const spleen = organ([-0.55 * bx, spineY + 0.6 * by, rng.uniform(0.1, 0.35) * Hz], [0.16 * bx, 0.22 * by, 0.3 * Hz], 0.2);
  fill(grid, hu, region, spleen, enhanced(a, LIVER_HU.spleen, ENHANCEMENT.spleen), Region.Organ, Region.Cavity);
  const stomachC: Vec3 = [-0.28 * bx, bodyCy + 0.3 * by, rng.uniform(0.15, 0.4) * Hz];
  const stomach = organ(stomachC, [0.22 * bx, 0.22 * by, 0.3 * Hz], 0.2);
  fill(grid, hu, region, stomach, enhanced(a, LIVER_HU.stomachWall, ENHANCEMENT.stomachWall), Region.Organ, Region.Cavity);
  const lumen = organ(stomachC, [0.17 * bx, 0.17 * by, 0.24 * Hz], 0.1);
  fill(grid, hu, region, lumen, LIVER_HU.stomachFluid, Region.Organ, Region.Organ);
  const gasCap = organ([stomachC[0], stomachC[1] + 0.12 * by, stomachC[2]], [0.1 * bx, 0.05 * by, 0.15 * Hz], 0.1);
  fill(grid, hu, region, gasCap, LIVER_HU.gas, Region.Organ, Region.Organ);
}

/** The painted liver: its right lobe (lesions and vessels are sized by it) and its enhanced HU. */
interface PaintedLiver {
  right: Blob;
  hu: number;
}

/**
 * Liver: large right lobe plus a left lobe reaching across the midline, anterior and superior,
 * then hepatic/portal vessels fanning out from the hilum, inside the liver only.
 */
function paintLiver(a: Abdomen, { bx, by, bodyCy }: BodyFrame, liverScale: number): PaintedLiver {
  const { grid, hu, region, rng } = a;
  const Hz = grid.half[2];
  const ls = liverScale * rng.uniform(0.9, 1.1);
  const right = randomBlob(rng, [0.38 * bx, bodyCy + 0.05 * by, rng.uniform(0.1, 0.3) * Hz], [0.5 * bx * ls, 0.62 * by * ls, 0.55 * Hz * ls], {
    roughness: 0.15,
    waves: 4,
    maxTilt: 0.25,
  });
  const left = randomBlob(rng, [0, bodyCy + 0.35 * by, rng.uniform(0.2, 0.4) * Hz], [0.32 * bx * ls, 0.22 * by * ls, 0.25 * Hz * ls], {
    roughness: 0.2,
    waves: 3,
    maxTilt: 0.3,
  });
  const liverHu = enhanced(a, LIVER_HU.liver, ENHANCEMENT.liver);
  // The liver displaces bowel and fat but not the muscle wall, spine or other organs.
  fill(grid, hu, region, right, liverHu, Region.Liver, Region.Cavity);
  fill(grid, hu, region, left, liverHu, Region.Liver, Region.Cavity);

  const hilum: Vec3 = [0.2 * bx, bodyCy + 0.05 * by, right.centre[2] - 0.1 * Hz];
  const vesselHu = enhanced(a, LIVER_HU.vessel, ENHANCEMENT.vessel);
  const vessels = rng.int(3, 6);
  for (let v = 0; v < vessels; v++) {
    const dir = rng.unitVector();
    const len = rng.uniform(0.3, 0.6) * Math.min(right.radii[0], right.radii[1]) * 1.6;
    const end: Vec3 = [hilum[0] + dir[0] * len + 0.3 * right.radii[0], hilum[1] + dir[1] * len, hilum[2] + dir[2] * len];
    paintVessel(grid, hu, region, hilum, end, rng.uniform(1, 2.2) * Math.min(...a.ct.spacing), vesselHu);
  }
  return { right, hu: liverHu };
}

/** Aorta and IVC run through everything along z; the IVC passes behind/through the liver. */
function paintGreatVessels(a: Abdomen, { bx, by, spineY, vr }: BodyFrame): void {
  const { hu, region } = a;
  const [X, Y, Z] = a.shape;
  const [mx, my] = a.grid.mm;
  const aortaR = 0.07 * by;
  const ivcR = 0.08 * by;
  const aorta: [number, number] = [-0.1 * bx, spineY + 1.35 * vr + aortaR];
  const ivc: [number, number] = [0.16 * bx, spineY + 1.5 * vr + ivcR];
  for (let z = 0, v = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      for (let x = 0; x < X; x++, v++) {
        if (region[v] === Region.Outside || region[v] === Region.Wall) continue;
        const ax = mx[x]! - aorta[0];
        const ay = my[y]! - aorta[1];
        const ix = mx[x]! - ivc[0];
        const iy = my[y]! - ivc[1];
        if (ax * ax + ay * ay < aortaR * aortaR) {
          hu[v] = enhanced(a, LIVER_HU.aorta, ENHANCEMENT.aorta);
          region[v] = Region.Organ;
        } else if (ix * ix + iy * iy < ivcR * ivcR) {
          hu[v] = enhanced(a, LIVER_HU.ivc, ENHANCEMENT.ivc);
          region[v] = Region.Organ;
        }
      }
    }
  }
}

/** Context phantoms: an inferior liver tongue and a liver-dense bowel loop (liver-context.ts), from their own RNG stream. */
function paintContext(a: Abdomen, { bx, by, bodyCy }: BodyFrame, contextMap: Uint8Array, liverHu: number, ctxRng: Rng): NonNullable<CaseFacts['context']> {
  const regions = { region: a.region, cavity: Region.Cavity, liver: Region.Liver, organ: Region.Organ };
  const tubes = placeLiverTubes(ctxRng, a.grid, regions, { bx, by, bodyCy, hz: a.grid.half[2] });
  const f = paintLiverTubes(a.grid, a.hu, regions, contextMap, tubes, liverHu);
  const far = beyondSlabVoxels(contextMap, a.shape);
  return {
    connected: f.tongues,
    lookalikes: f.lookalikes,
    connectedVoxels: f.tongueVoxels,
    lookalikeVoxels: f.lookalikeVoxels,
    connectedBeyondSlab: far.connected,
    lookalikeBeyondSlab: far.lookalike,
  };
}

/** Liver texture (the look-alike gets it too), then labels: liver = region Liver. */
function labelLiver(a: Abdomen, contextMap: Uint8Array | null): { labels: Uint8Array; tex: Float32Array } {
  const { grid, hu, region } = a;
  const tex = smoothNoise(a.rng, grid, 0.08 * meanHalf(grid));
  const labels = new Uint8Array(grid.voxels);
  for (let v = 0; v < grid.voxels; v++) {
    if (region[v] === Region.Liver) {
      labels[v] = 1;
      hu[v]! += 5 * tex[v]!;
    } else if (contextMap && contextMap[v] === CONTEXT_ROLE.lookalike) {
      hu[v]! += 5 * tex[v]!;
    }
  }
  return { labels, tex };
}

/**
 * Lesions (label 2): hypodense (10–25 HU below liver), centred in the liver interior and clipped
 * to it, so every lesion voxel is surrounded by liver. Returns how many got a voxel (the others
 * do not count).
 */
function paintLesions(
  a: Abdomen,
  o: { labels: Uint8Array; tex: Float32Array; contextMap: Uint8Array | null; liver: PaintedLiver; caseMix: CaseMix },
): number {
  const { grid, hu, rng } = a;
  const { labels, tex, contextMap, liver } = o;
  const [X, Y] = a.shape;
  const H = grid.half;
  const [mx, my, mz] = grid.mm;
  const N = grid.voxels;
  const liverMask = new Uint8Array(N);
  // Lesions stay in the liver's main body (not the context tongue, whose look-alike has none).
  for (let v = 0; v < N; v++) liverMask[v] = labels[v] === 1 && !(contextMap && contextMap[v] === CONTEXT_ROLE.connected) ? 1 : 0;
  const interior = erode(liverMask, a.shape);
  let interiorCount = 0;
  for (let v = 0; v < N; v++) interiorCount += interior[v]!;
  const candidates = new Int32Array(interiorCount);
  for (let v = 0, n = 0; v < N; v++) if (interior[v]) candidates[n++] = v;
  const wanted = rng.int(0, o.caseMix.maxLesions);
  // Case-mix radii are for the reference 64-voxel-wide grid; anatomy scales with the grid, so do lesions.
  const lesionScale = (H[0] + H[1]) / 64;
  const [rLo, rHi] = o.caseMix.lesionRadiusMm.map((r) => r * lesionScale) as [number, number];
  let lesions = 0;
  for (let l = 0; l < wanted && candidates.length > 0; l++) {
    const at = candidates[rng.int(0, candidates.length - 1)]!;
    const cx = at % X;
    const cy = Math.floor(at / X) % Y;
    const cz = Math.floor(at / (X * Y));
    // Never more than a quarter of the right lobe's smallest radius: lesions stay small and subtle.
    const r = Math.min(rng.logUniform(rLo, rHi), 0.25 * Math.min(...liver.right.radii));
    const lesion = randomBlob(rng, [mx[cx]!, my[cy]!, mz[cz]!], [r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)], {
      roughness: 0.2,
      maxTilt: Math.PI,
    });
    const contrast = rng.uniform(10, 25);
    const idx = blobVoxels(grid, lesion).index;
    let painted = 0;
    for (let n = 0; n < idx.length; n++) {
      const v = idx[n]!;
      if (!interior[v]) continue;
      if (labels[v] !== 2) hu[v] = liver.hu - contrast + 3 * tex[v]!;
      labels[v] = 2;
      painted++;
    }
    if (painted > 0) lesions++;
  }
  return lesions;
}

/** Scanner: cupping (multiplicative on attenuation inside the body), calibration, noise, int16. */
function scan(a: Abdomen, noiseRng: Rng): Int16Array {
  const { grid, hu, region, ct } = a;
  const N = grid.voxels;
  const cup = smoothNoise(a.rng, grid, 1.5 * meanHalf(grid));
  const normals = noiseRng.fillNormals(new Float32Array(N));
  const image = new Int16Array(N);
  for (let v = 0; v < N; v++) {
    let h = hu[v]!;
    if (region[v] !== Region.Outside) h = (h + 1000) * Math.exp(ct.cupping * cup[v]!) - 1000;
    h = ct.scale * h + ct.offset + ct.noiseHu * normals[v]!;
    image[v] = Math.round(Math.min(3071, Math.max(-1024, h)));
  }
  return image;
}
