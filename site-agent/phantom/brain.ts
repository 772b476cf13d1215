/**
 * BraTS-like brain phantom: a head (scalp, skull, CSF, textured grey/white matter, ventricles)
 * with 1–2 gliomas made of nested shells — necrotic/non-enhancing core (2) inside an enhancing
 * rim (3) inside oedema (1) — in four MR contrasts. The class contrast profiles are chosen so
 * that every modality confuses at least one pair of classes and every pair is separated by at
 * least one modality, as in real multi-parametric MRI.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { Rng } from './prng.ts';
import { samplingGrid, type SamplingGrid } from './grid.ts';
import { blobVoxels, randomBlob, type Blob, type Vec3 } from './blob.ts';
import type { SiteStyle } from './site-style.ts';
import { fractalNoise, smoothNoise } from './smooth-noise.ts';
import { dilateLabel, labelSet } from './morphology.ts';
import { flipAxes, siteGeometry } from './orientation.ts';
import { countLabels, type CaseFacts, type CaseKey, type PhantomCase } from './types.ts';
import { paintTumour, placeTumour, Tissue } from './tumour.ts';
import { beyondSlabVoxels, contextGrid } from './context.ts';
import { BRAIN_CONTEXT, paintTracts, placeTractCandidates } from './brain-context.ts';

export const BRAIN_MODALITIES = { '0': 'FLAIR', '1': 'T1w', '2': 't1gd', '3': 'T2w' } as const;
export const BRAIN_LABELS = { '0': 'background', '1': 'edema', '2': 'non-enhancing tumor', '3': 'enhancing tumour' } as const;
export const BRAIN_CHANNELS = 4;

/**
 * Mean intensity per tissue and modality [FLAIR, T1w, t1gd, T2w], white matter ≈ 1.1 on T1.
 * Designed confusions (same mean on one modality): FLAIR edema = enhancing and core ≈ brain;
 * T1w edema ≈ enhancing; t1gd edema ≈ healthy grey/white mix; T2w edema = core.
 * Separations: edema vs brain on FLAIR/T2w; core vs the rest on T1w; enhancing on t1gd.
 */
export const BRAIN_PROFILES: Readonly<Record<'grey' | 'white' | 'csf' | 'skull' | 'scalp' | 'edema' | 'core' | 'enhancing', readonly number[]>> = {
  grey: [1.1, 0.85, 0.85, 1.15],
  white: [0.9, 1.1, 1.1, 0.85],
  csf: [0.25, 0.35, 0.35, 2.0],
  skull: [0.12, 0.15, 0.15, 0.1],
  scalp: [0.6, 1.5, 1.5, 0.9],
  edema: [1.7, 0.78, 0.95, 1.7],
  core: [1.0, 0.48, 0.5, 1.7],
  enhancing: [1.7, 0.8, 1.9, 1.3],
};

/** Tissue layers of the head by normalised radius of the head blob. */
const SCALP_FROM = 0.92;
const SKULL_FROM = 0.84;
const CSF_FROM = 0.8;
/** Grey matter dominates the outer cortex band of the brain. */
const CORTEX_FROM = 0.7;

function profileTable(): Float32Array {
  const t = new Float32Array(8 * BRAIN_CHANNELS);
  const put = (tissue: Tissue, p: readonly number[]): void => t.set(p, tissue * BRAIN_CHANNELS);
  put(Tissue.Scalp, BRAIN_PROFILES.scalp);
  put(Tissue.Skull, BRAIN_PROFILES.skull);
  put(Tissue.Csf, BRAIN_PROFILES.csf);
  put(Tissue.Edema, BRAIN_PROFILES.edema);
  put(Tissue.Core, BRAIN_PROFILES.core);
  put(Tissue.Enhancing, BRAIN_PROFILES.enhancing);
  return t;
}

export function generateBrainCase(key: CaseKey, shape: [number, number, number]): PhantomCase {
  const { style, seed, caseIndex } = key;
  const rng = Rng.derive('phantom', 'brain', seed, style.k, caseIndex, 'anatomy');
  const noiseRng = Rng.derive('phantom', 'brain', seed, style.k, caseIndex, 'noise');
  const context = key.context ? contextGrid(shape, style.mri.spacing) : null;
  const grid = context ? context.grid : samplingGrid(shape, style.mri.spacing);
  const [X, Y, Z] = shape;
  const N = grid.voxels;
  const H = grid.half;

  // Head: slightly irregular ellipsoid, a little off-centre and tilted.
  const headScale = rng.uniform(0.9, 1);
  const headCentre: Vec3 = [rng.uniform(-0.03, 0.03) * H[0], rng.uniform(-0.03, 0.03) * H[1], rng.uniform(-0.03, 0.03) * H[2]];
  const shape0 = context ? BRAIN_CONTEXT.head : ([0.72, 0.78, 0.7] as const);
  const headRadii: Vec3 = [shape0[0] * H[0] * headScale, shape0[1] * H[1] * headScale, shape0[2] * H[2] * headScale];
  const { headVox, tissue, cortex } = paintHead(grid, randomBlob(rng, headCentre, headRadii, { roughness: 0.03, waves: 3, maxTilt: 0.08 }));
  const brainAxes = headRadii.map((r) => r * CSF_FROM) as Vec3;
  paintVentricles(rng, grid, tissue, headCentre, brainAxes);

  // Tumours, then close the shells: a core never touches healthy tissue, a rim is always wrapped in oedema.
  // Context phantoms: tumours come from tumour-plus-tract candidates (brain-context.ts), the
  // tracts are painted after the shells are closed.
  const labels = new Uint8Array(N);
  const candidates = context ? placeTractCandidates(Rng.derive('phantom', 'brain', seed, style.k, caseIndex, 'context'), grid, headCentre, brainAxes, style.caseMix.tumourScale) : null;
  const tumours = candidates ? candidates.real.length : 1 + (rng.bernoulli(style.caseMix.secondTumourProbability) ? 1 : 0);
  for (let t = 0; t < tumours; t++) {
    if (candidates) paintTumour(rng, grid, labels, tissue, candidates.real[t]!.tumour, BRAIN_CONTEXT.rimFraction);
    else paintTumour(rng, grid, labels, tissue, placeTumour(rng, headCentre, brainAxes, style.caseMix.tumourScale));
  }
  dilateLabel(labels, shape, labelSet(2), labelSet(0, 1), 3);
  dilateLabel(labels, shape, labelSet(3), labelSet(0), 1);
  const contextMap = candidates ? new Uint8Array(N) : null;
  const contextFacts = candidates && contextMap ? paintTracts(grid, labels, tissue, contextMap, candidates.real, candidates.lookalikes) : null;

  const image = scanMri(rng, noiseRng, grid, style, { headVox, tissue, cortex, labels });

  const flips = style.flips;
  const facts: CaseFacts = { lesions: tumours, labelVoxels: countLabels(labels, 4) };
  if (contextFacts && contextMap) {
    const far = beyondSlabVoxels(contextMap, shape);
    facts.context = {
      connected: contextFacts.tracts,
      lookalikes: contextFacts.lookalikes,
      connectedVoxels: contextFacts.tractVoxels,
      lookalikeVoxels: contextFacts.lookalikeVoxels,
      connectedBeyondSlab: far.connected,
      lookalikeBeyondSlab: far.lookalike,
    };
  }
  return {
    image: flipAxes(image, [X, Y, Z, BRAIN_CHANNELS], flips),
    imageDims: [X, Y, Z, BRAIN_CHANNELS],
    imageDatatype: 'float32',
    label: flipAxes(labels, [X, Y, Z], flips),
    labelDims: [X, Y, Z],
    geometry: siteGeometry(shape, context ? context.spacing : style.mri.spacing, style),
    facts,
    ...(contextMap ? { contextMap: flipAxes(contextMap, [X, Y, Z], flips) } : {}),
  };
}

/** Scalp, skull, CSF and brain by the head blob's normalised radius; `cortex` runs 0 (deep) to 1 (brain surface). */
function paintHead(grid: SamplingGrid, head: Blob): { headVox: ReturnType<typeof blobVoxels>; tissue: Uint8Array; cortex: Float32Array } {
  const N = grid.voxels;
  const headVox = blobVoxels(grid, head);
  const tissue = new Uint8Array(N);
  const cortex = new Float32Array(N);
  for (let n = 0; n < headVox.index.length; n++) {
    const i = headVox.index[n]!;
    const rho = headVox.rho[n]!;
    tissue[i] = rho >= SCALP_FROM ? Tissue.Scalp : rho >= SKULL_FROM ? Tissue.Skull : rho >= CSF_FROM ? Tissue.Csf : Tissue.Brain;
    if (rho >= CORTEX_FROM && rho < CSF_FROM) cortex[i] = (rho - CORTEX_FROM) / (CSF_FROM - CORTEX_FROM);
  }
  return { headVox, tissue, cortex };
}

/** Lateral ventricles: two CSF blobs either side of the midline. */
function paintVentricles(rng: Rng, grid: SamplingGrid, tissue: Uint8Array, headCentre: Vec3, brainAxes: Vec3): void {
  for (const side of [-1, 1]) {
    const c: Vec3 = [
      headCentre[0] + side * rng.uniform(0.1, 0.16) * brainAxes[0],
      headCentre[1] + rng.uniform(-0.1, 0.1) * brainAxes[1],
      headCentre[2] + rng.uniform(0, 0.15) * brainAxes[2],
    ];
    const v = randomBlob(rng, c, [0.08 * brainAxes[0], 0.3 * brainAxes[1], 0.15 * brainAxes[2]], { roughness: 0.25, maxTilt: 0.2 });
    const idx = blobVoxels(grid, v).index;
    for (let n = 0; n < idx.length; n++) if (tissue[idx[n]!] === Tissue.Brain) tissue[idx[n]!] = Tissue.Csf;
  }
}

/**
 * The four MR channels: textures and the scanner's bias field (from the anatomy stream), then per
 * voxel of the head its tissue mean (grey/white mix for brain) and texture, and per channel the
 * scanner's scale, bias, offset and Rician noise (from the noise stream).
 */
function scanMri(
  rng: Rng,
  noiseRng: Rng,
  grid: SamplingGrid,
  style: Pick<SiteStyle, 'mri'>,
  head: { headVox: { index: Int32Array }; tissue: Uint8Array; cortex: Float32Array; labels: Uint8Array },
): Float32Array {
  const N = grid.voxels;
  const H = grid.half;
  const hMean = (H[0] + H[1] + H[2]) / 3;
  const { headVox, tissue, cortex, labels } = head;
  // Textures and the scanner's bias field.
  const wm = fractalNoise(rng, grid, 0.3 * hMean, 2);
  const grain = smoothNoise(rng, grid, 0.1 * hMean);
  const tumourTexture = smoothNoise(rng, grid, 0.12 * hMean);
  const bias = smoothNoise(rng, grid, 1.2 * hMean);

  // Per-voxel tissue mean (grey/white mix for brain) and texture, then per channel: scanner
  // scale, bias, offset and Rician noise. Channel-outer keeps the noise buffer to one channel.
  const table = profileTable();
  const grey = BRAIN_PROFILES.grey;
  const white = BRAIN_PROFILES.white;
  const { scale, offset, noise, biasStrength } = style.mri;
  const C = BRAIN_CHANNELS;
  const count = headVox.index.length;
  const cls = new Uint8Array(count);
  const wmFrac = new Float32Array(count);
  const gain = new Float32Array(count); // texture × bias
  for (let n = 0; n < count; n++) {
    const i = headVox.index[n]!;
    const lab = labels[i]!;
    const t = lab > 0 ? Tissue.Edema + lab - 1 : tissue[i]!;
    cls[n] = t;
    if (t === Tissue.Brain) wmFrac[n] = Math.min(1, Math.max(0, 0.5 + 1.8 * wm[i]!)) * (1 - cortex[i]!);
    const tex = t >= Tissue.Edema ? 1 + 0.08 * tumourTexture[i]! : 1 + 0.04 * grain[i]!;
    gain[n] = tex * Math.exp(biasStrength * bias[i]!);
  }
  const image = new Float32Array(N * C);
  const normals = new Float32Array(count * 2);
  for (let c = 0; c < C; c++) {
    const s = scale[c]! * noise * white[1]!;
    const floor = 1e-3 * scale[c]!;
    const g = grey[c]!;
    const dw = white[c]! - g;
    const base = c * N;
    noiseRng.fillNormals(normals);
    for (let n = 0; n < count; n++) {
      const t = cls[n]!;
      const mean = t === Tissue.Brain ? g + wmFrac[n]! * dw : table[t * C + c]!;
      const clean = scale[c]! * mean * gain[n]! + offset;
      // Rician magnitude noise, as in real MR magnitude images; never exactly 0 inside the head.
      const re = clean + s * normals[2 * n]!;
      const im = s * normals[2 * n + 1]!;
      image[base + headVox.index[n]!] = Math.max(Math.sqrt(re * re + im * im), floor);
    }
  }

  return image;
}
