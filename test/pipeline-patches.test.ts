import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import type { Shape3 } from '../site-agent/pipeline/case.ts';
import {
  argmaxChannelsLast,
  extractPatch,
  gridPatches,
  gridStarts,
  padShapeToMultiple,
  patchHasForeground,
  reconstruct,
  reconstructLabels,
  type PatchOutput,
} from '../site-agent/pipeline/patches.ts';
import { caseToTensor, labelsToOneHot, labelsToOneHotTensor, patchToTensor } from '../site-agent/pipeline/tensors.ts';
import { codeOf, codedCase, toChannelsLast } from './pipeline-fixtures.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

describe('gridPatches', () => {
  it('reproduces the thesis slabs: 16 voxels along Z, last one padded', () => {
    expect(gridPatches([4, 5, 40], [4, 5, 16])).toEqual([
      [0, 0, 0],
      [0, 0, 16],
      [0, 0, 32],
    ]);
  });

  it('tiles every axis with ceil(dim/p) patches, x slowest', () => {
    const o = gridPatches([7, 5, 9], [3, 2, 4]);
    expect(o.length).toBe(3 * 3 * 3);
    expect(o[0]).toEqual([0, 0, 0]);
    expect(o[1]).toEqual([0, 0, 4]);
    expect(o[3]).toEqual([0, 2, 0]);
    expect(o[26]).toEqual([6, 4, 8]);
    expect(gridStarts(8, 4)).toEqual([0, 4]);
    expect(gridStarts(3, 4)).toEqual([0]);
  });

  it('rejects non-positive or fractional shapes', () => {
    expect(() => gridPatches([4, 0, 4], [2, 2, 2])).toThrow(PatchFedError);
    expect(() => gridPatches([4, 4, 4], [2, 1.5, 2])).toThrow(/patch shape/);
  });
});

describe('extractPatch', () => {
  const shape: Shape3 = [5, 4, 6];
  const c = codedCase(shape, 2);

  it('copies image channels-last and the label, with zeros beyond the volume', () => {
    const origin = [3, 2, 4] as const;
    const patch: Shape3 = [3, 3, 3];
    const p = extractPatch(c, origin, patch);
    expect(p.image.length).toBe(27 * 2);
    for (let lx = 0; lx < 3; lx++) {
      for (let ly = 0; ly < 3; ly++) {
        for (let lz = 0; lz < 3; lz++) {
          const [x, y, z] = [origin[0] + lx, origin[1] + ly, origin[2] + lz];
          const inside = x < 5 && y < 4 && z < 6;
          const l = (lx * 3 + ly) * 3 + lz;
          for (let ch = 0; ch < 2; ch++) expect(p.image[l * 2 + ch]).toBe(inside ? Math.fround(codeOf(ch, x, y, z)) : 0);
          expect(p.label![l]).toBe(inside ? c.label![(x * 4 + y) * 6 + z] : 0);
        }
      }
    }
  });

  it('accepts origins before the volume start (zero padding there too)', () => {
    const p = extractPatch(c, [-1, 0, 0], [2, 1, 1]);
    expect(Array.from(p.image)).toEqual([0, 0, Math.fround(codeOf(0, 0, 0, 0)), Math.fround(codeOf(1, 0, 0, 0))]);
  });

  it('rejects a case whose arrays do not match its shape', () => {
    expect(() => extractPatch({ ...c, image: c.image.subarray(1) }, [0, 0, 0], [2, 2, 2])).toThrow(/case case-t: image has/);
  });

  it('detects foreground in a patch', () => {
    expect(patchHasForeground(c.label!, shape, [0, 0, 0], [1, 4, 6])).toBe(false);
    expect(patchHasForeground(c.label!, shape, [1, 1, 1], [1, 1, 1])).toBe(true);
    expect(patchHasForeground(c.label!, shape, [4, 3, 5], [3, 3, 3])).toBe(true); // the class-2 voxel, patch padded
  });
});

describe('reconstruct', () => {
  const cases: Array<[Shape3, Shape3]> = [
    [[5, 4, 6], [3, 3, 3]],
    [[4, 5, 40], [4, 5, 16]],
    [[2, 3, 2], [4, 4, 4]],
  ];

  it.each(cases)('is the exact inverse of extraction (identity model) for %j / %j', (shape, patch) => {
    const C = 3;
    const c = codedCase(shape, C);
    const pieces: PatchOutput[] = [];
    const labelPieces: PatchOutput[] = [];
    for (const origin of gridPatches(shape, patch)) {
      const p = extractPatch(c, origin, patch);
      pieces.push({ origin, data: p.image });
      labelPieces.push({ origin, data: p.label! });
    }
    expect(reconstruct(pieces, shape, patch, C)).toEqual(toChannelsLast(c.image, C));
    expect(reconstructLabels(labelPieces, shape, patch)).toEqual(c.label);
  });

  it('refuses to leave voxels uncovered or to take wrongly sized outputs', () => {
    const shape: Shape3 = [4, 4, 4];
    const patch: Shape3 = [2, 4, 4];
    const piece = { origin: [0, 0, 0] as const, data: new Float32Array(32) };
    expect(() => reconstruct([piece], shape, patch, 1)).toThrow(/voxel \(2, 0, 0\).*covered by no patch/);
    expect(() => reconstruct([{ origin: [0, 0, 0], data: new Float32Array(31) }], shape, patch, 1)).toThrow(/has 31 values/);
  });

  it('pads shapes to a divisor and round-trips a whole padded case', () => {
    expect(padShapeToMultiple([5, 8, 9], 4)).toEqual([8, 8, 12]);
    const shape: Shape3 = [3, 5, 2];
    const c = codedCase(shape, 2);
    const padded = padShapeToMultiple(shape, 4);
    const before = tf.memory().numTensors;
    const t = caseToTensor(c, padded);
    expect(t.shape).toEqual([1, 4, 8, 4, 2]);
    const back = reconstruct([{ origin: [0, 0, 0], data: t.dataSync() }], shape, padded, 2);
    t.dispose();
    expect(back).toEqual(toChannelsLast(c.image, 2));
    expect(tf.memory().numTensors).toBe(before);
    expect(() => caseToTensor(c, [2, 8, 4])).toThrow(/smaller than the case shape/);
  });
});

describe('tensor conversions', () => {
  it('makes NDHWC patch tensors and checks sizes', () => {
    const data = Float32Array.from({ length: 2 * 2 * 3 * 1 * 4 }, (_, i) => i);
    const t = patchToTensor(data, 2, [2, 3, 1], 4);
    expect(t.shape).toEqual([2, 2, 3, 1, 4]);
    expect(t.dataSync()).toEqual(data);
    t.dispose();
    expect(() => patchToTensor(data, 1, [2, 3, 1], 4)).toThrow(/needs 24/);
  });

  it('one-hot encodes labels channels-last and rejects labels without a channel', () => {
    expect(Array.from(labelsToOneHot(Uint8Array.from([2, 0, 1]), 3))).toEqual([0, 0, 1, 1, 0, 0, 0, 1, 0]);
    expect(() => labelsToOneHot(Uint8Array.from([0, 3]), 3)).toThrow(/label value 3 at index 1/);
    const t = labelsToOneHotTensor(Uint8Array.from([1, 0, 1, 1]), 2, [1, 2, 1], 2);
    expect(t.shape).toEqual([2, 1, 2, 1, 2]);
    expect(Array.from(t.dataSync())).toEqual([0, 1, 1, 0, 0, 1, 0, 1]);
    t.dispose();
  });

  it('argmax picks the largest channel, ties to the lowest class', () => {
    expect(Array.from(argmaxChannelsLast(Float32Array.from([0.2, 0.5, 0.3, 0.4, 0.4, 0.2, 0, 0, 1]), 3))).toEqual([1, 0, 2]);
    expect(() => argmaxChannelsLast(new Float32Array(5), 3)).toThrow(PatchFedError);
  });
});
