/** Tiny MSD datasets written with the real NIfTI writer, for the dataset and inspect tests. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { identityAffine, type Geometry } from '../shared/geometry.ts';
import { writeNifti } from '../shared/nifti/index.ts';
import type { DatatypeName, VoxelArray } from '../shared/volume.ts';
import { mulberry32 } from '../shared/random.ts';

export function geometryFor(shape: [number, number, number], spacing: [number, number, number] = [1, 1, 1]): Geometry {
  return { shape, spacing, qformCode: 1, sformCode: 1, affine: identityAffine(spacing), affineSource: 'sform', qfac: 1, xyztUnits: 2 };
}

export interface FixtureVolume {
  data: VoxelArray;
  /** [X, Y, Z] or [X, Y, Z, C], NIfTI order (x fastest). */
  dims: number[];
  datatype: DatatypeName;
  spacing?: [number, number, number];
}

export async function writeVolume(file: string, v: FixtureVolume): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const shape: [number, number, number] = [v.dims[0]!, v.dims[1]!, v.dims[2]!];
  await writeNifti(file, { data: v.data, dims: v.dims, datatype: v.datatype }, geometryFor(shape, v.spacing));
}

/** Deterministic pseudo-random numbers (the project's mulberry32), so fixtures are identical on every run. */
export function rng(seed: number): () => number {
  return mulberry32(seed);
}

/** An MRI-like image: zero border (background), positive noisy interior, C channels. */
export function mriImage(shape: [number, number, number], channels: number, seed: number): FixtureVolume {
  const [X, Y, Z] = shape;
  const n = X * Y * Z;
  const data = new Float32Array(n * channels);
  const r = rng(seed);
  for (let c = 0; c < channels; c++)
    for (let z = 0; z < Z; z++)
      for (let y = 0; y < Y; y++)
        for (let x = 0; x < X; x++) {
          const inside = x > 0 && y > 0 && x < X - 1 && y < Y - 1;
          data[c * n + x + X * (y + Y * z)] = inside ? 100 * (c + 1) + Math.round(50 * r()) : 0;
        }
  return { data, dims: channels === 1 ? [X, Y, Z] : [X, Y, Z, channels], datatype: 'float32' };
}

/** A label map with a foreground block of value `fg` in the middle. */
export function blockLabel(shape: [number, number, number], fg = 1, extra?: { value: number; at: [number, number, number] }): FixtureVolume {
  const [X, Y, Z] = shape;
  const data = new Uint8Array(X * Y * Z);
  for (let z = 0; z < Z; z++)
    for (let y = 1; y < Y - 1; y++)
      for (let x = 1; x < Math.max(2, X >> 1); x++) data[x + X * (y + Y * z)] = fg;
  if (extra) data[extra.at[0] + X * (extra.at[1] + Y * extra.at[2])] = extra.value;
  return { data, dims: [X, Y, Z], datatype: 'uint8' };
}

export interface FixtureCase {
  id: string;
  image?: FixtureVolume;
  label?: FixtureVolume;
  /** Leave the file out (listed in dataset.json but not on disk). */
  skipImage?: boolean;
  skipLabel?: boolean;
}

export interface FixtureDataset {
  dir: string;
  cleanup: () => Promise<void>;
}

export async function tempDir(prefix = 'patchfed-ds-'): Promise<FixtureDataset> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Write dataset.json and the cases' files under `dir`, MSD style ("./imagesTr/<id>.nii.gz"). */
export async function writeDataset(
  dir: string,
  opts: {
    name?: string;
    modality?: Record<string, string>;
    labels?: Record<string, string>;
    cases: FixtureCase[];
    test?: FixtureCase[];
    json?: Record<string, unknown>;
  },
): Promise<void> {
  const training = [];
  for (const c of opts.cases) {
    const image = `./imagesTr/${c.id}.nii.gz`;
    const label = `./labelsTr/${c.id}.nii.gz`;
    if (c.image && !c.skipImage) await writeVolume(path.join(dir, image), c.image);
    if (c.label && !c.skipLabel) await writeVolume(path.join(dir, label), c.label);
    training.push({ image, label });
  }
  const test = [];
  for (const c of opts.test ?? []) {
    const image = `./imagesTs/${c.id}.nii.gz`;
    if (c.image && !c.skipImage) await writeVolume(path.join(dir, image), c.image);
    test.push(image);
  }
  const json = {
    name: opts.name ?? 'Tiny',
    description: 'test fixture',
    tensorImageSize: '4D',
    modality: opts.modality ?? { '0': 'FLAIR', '1': 'T1w' },
    labels: opts.labels ?? { '0': 'background', '1': 'tumour' },
    numTraining: training.length,
    numTest: test.length,
    training,
    test,
    ...opts.json,
  };
  await writeFile(path.join(dir, 'dataset.json'), JSON.stringify(json, null, 2));
}

/** A usable two-channel MRI case with shape `shape`. */
export function goodCase(id: string, shape: [number, number, number], seed: number, channels = 2): FixtureCase {
  return { id, image: mriImage(shape, channels, seed), label: blockLabel(shape) };
}
