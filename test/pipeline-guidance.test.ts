import { describe, expect, it } from 'vitest';
import type { Shape3 } from '../site-agent/pipeline/case.ts';
import { buildGuidedImage, guidedCase, guidedChannels, inferenceGuidance, trainingGuidance } from '../site-agent/pipeline/guidance.ts';
import { extractPatch } from '../site-agent/pipeline/patches.ts';
import { resampleLabels } from '../site-agent/pipeline/resample.ts';
import { labelsToOneHot } from '../site-agent/pipeline/tensors.ts';
import { randomCase } from './pipeline-fixtures.ts';

describe('buildGuidedImage', () => {
  it('appends one channel per foreground class after the image channels', () => {
    const shape: Shape3 = [2, 1, 2];
    const image = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]); // C = 2, 4 voxels
    const seg = Uint8Array.from([0, 2, 1, 2]);
    const g = buildGuidedImage(image, 2, shape, seg, 3);
    expect(guidedChannels(2, 3)).toBe(4);
    expect(Array.from(g)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, /* class 1 */ 0, 0, 1, 0, /* class 2 */ 0, 1, 0, 1]);
  });

  it('refuses segmentations with classes the model does not have, or wrong sizes', () => {
    const image = new Float32Array(4);
    expect(() => buildGuidedImage(image, 1, [2, 2, 1], Uint8Array.from([0, 1, 3, 0]), 3)).toThrow(/label value 3/);
    expect(() => buildGuidedImage(image, 1, [2, 2, 1], new Uint8Array(3), 3)).toThrow(/segmentation has 3 values/);
    expect(() => buildGuidedImage(image, 1, [2, 2, 1], new Uint8Array(4), 1)).toThrow(/at least 2 classes/);
  });
});

describe('training guidance', () => {
  it('is the ground truth nearest-down then nearest-up, blocky at the stage-1 resolution', () => {
    const shape: Shape3 = [8, 6, 4];
    const low: Shape3 = [4, 3, 2];
    const c = randomCase(shape, 1, 3, 4);
    const g = trainingGuidance(c.label!, shape, low);
    expect(g).toEqual(resampleLabels(resampleLabels(c.label!, shape, low), low, shape));
    expect(g).not.toEqual(c.label); // random labels lose detail at half resolution
    // constant on every 2x2x2 block
    for (let x = 0; x < 8; x++) for (let y = 0; y < 6; y++) for (let z = 0; z < 4; z++) {
      expect(g[(x * 6 + y) * 4 + z]).toBe(g[((x & ~1) * 6 + (y & ~1)) * 4 + (z & ~1)]);
    }
  });

  it('leaves labels that are already blocky at that resolution unchanged', () => {
    const shape: Shape3 = [4, 4, 2];
    const label = new Uint8Array(32);
    for (let x = 0; x < 4; x++) for (let y = 0; y < 4; y++) for (let z = 0; z < 2; z++) label[(x * 4 + y) * 2 + z] = ((x >> 1) + (y >> 1)) % 3;
    expect(trainingGuidance(label, shape, [2, 2, 1])).toEqual(label);
  });
});

describe('inference guidance', () => {
  it('argmaxes the stage-1 probabilities at low resolution and upsamples nearest', () => {
    const low: Shape3 = [2, 3, 2];
    const shape: Shape3 = [5, 7, 4];
    const lowLabel = Uint8Array.from([0, 1, 2, 2, 1, 0, 0, 0, 1, 1, 2, 2]);
    // soft, not one-hot, probabilities whose argmax is lowLabel
    const probs = labelsToOneHot(lowLabel, 3).map((v) => (v === 1 ? 0.5 : 0.25));
    const g = inferenceGuidance(probs, 3, low, shape);
    expect(g).toEqual(resampleLabels(lowLabel, low, shape));
    expect(new Set(g)).toEqual(new Set([0, 1, 2]));
    expect(() => inferenceGuidance(probs.subarray(1), 3, low, shape)).toThrow(/stage-1 probabilities have 35 values/);
  });
});

describe('guidedCase', () => {
  it('gives a case with C + K − 1 channels that the patch code can cut', () => {
    const c = randomCase([4, 4, 4], 2, 3, 8);
    const g = guidedCase(c, trainingGuidance(c.label!, c.shape, [2, 2, 2]), 3);
    expect(g.channels).toBe(4);
    expect(g.label).toBe(c.label);
    expect(g.image.subarray(0, c.image.length)).toEqual(c.image);
    const p = extractPatch(g, [1, 1, 1], [2, 2, 2]);
    expect(p.image.length).toBe(8 * 4);
    // guidance channels in the patch are one-hot of foreground (at most one 1 per voxel)
    for (let v = 0; v < 8; v++) expect(p.image[v * 4 + 2]! + p.image[v * 4 + 3]!).toBeLessThanOrEqual(1);
  });
});
