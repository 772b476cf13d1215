/** Tiny deterministic volumes for the pipeline tests (not a test file itself). */
import type { CaseVolume, Shape3 } from '../site-agent/pipeline/case.ts';
import { createRng } from '../site-agent/pipeline/sampler.ts';

/** A distinct value per (channel, x, y, z), so misplaced copies show up. */
export function codeOf(c: number, x: number, y: number, z: number): number {
  return 1 + c * 1000 + x * 100 + y * 10 + z + 0.5;
}

/** Case whose image holds codeOf(...) and whose label is a small box of class 1 plus a voxel of class 2. */
export function codedCase(shape: Shape3, channels: number, id = 'case-t'): CaseVolume {
  const [X, Y, Z] = shape;
  const image = new Float32Array(channels * X * Y * Z);
  for (let c = 0; c < channels; c++) {
    for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) image[((c * X + x) * Y + y) * Z + z] = codeOf(c, x, y, z);
  }
  const label = new Uint8Array(X * Y * Z);
  for (let x = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      for (let z = 0; z < Z; z++) {
        const inBox = x >= 1 && x < Math.min(3, X) && y >= 1 && y < Math.min(3, Y) && z >= 1 && z < Math.min(4, Z);
        label[(x * Y + y) * Z + z] = inBox ? 1 : 0;
      }
    }
  }
  label[label.length - 1] = 2;
  return { id, image, label, shape, channels };
}

export function randomCase(shape: Shape3, channels: number, numClasses: number, seed: number, id = 'case-r'): CaseVolume {
  const rng = createRng(seed);
  const v = shape[0] * shape[1] * shape[2];
  const image = Float32Array.from({ length: v * channels }, () => rng() * 2 - 1);
  const label = Uint8Array.from({ length: v }, () => Math.floor(rng() * numClasses));
  return { id, image, label, shape, channels };
}

/** (C, X, Y, Z) → (X, Y, Z, C). */
export function toChannelsLast(image: Float32Array, channels: number): Float32Array {
  const v = image.length / channels;
  const out = new Float32Array(image.length);
  for (let c = 0; c < channels; c++) for (let i = 0; i < v; i++) out[i * channels + c] = image[c * v + i]!;
  return out;
}
