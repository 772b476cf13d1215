import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { confusionCounts, diceFromCounts, diceScores, nanMean } from '../site-agent/metrics/dice.ts';
import { createRng } from '../site-agent/pipeline/sampler.ts';

//                            0  1  2  3  4  5  6  7
const truth = Uint8Array.from([0, 1, 1, 2, 2, 2, 0, 0]);
const pred = Uint8Array.from([0, 1, 2, 2, 2, 0, 0, 1]);

describe('confusionCounts', () => {
  it('counts one-vs-rest TP/FP/FN/TN per class', () => {
    const c = confusionCounts(pred, truth, 4);
    expect(c.tp).toEqual([2, 1, 2, 0]);
    expect(c.fp).toEqual([1, 1, 1, 0]);
    expect(c.fn).toEqual([1, 1, 1, 0]);
    expect(c.tn).toEqual([4, 5, 4, 8]);
  });

  it('agrees with a per-voxel count on random volumes', () => {
    const rng = createRng(3);
    const n = 5000;
    const K = 4;
    const p = Uint8Array.from({ length: n }, () => Math.floor(rng() * K));
    const t = Uint8Array.from({ length: n }, () => Math.floor(rng() * K));
    const c = confusionCounts(p, t, K);
    for (let k = 0; k < K; k++) {
      let tp = 0, fp = 0, fn = 0, tn = 0;
      for (let i = 0; i < n; i++) {
        const a = p[i] === k;
        const b = t[i] === k;
        if (a && b) tp++;
        else if (a) fp++;
        else if (b) fn++;
        else tn++;
      }
      expect([c.tp[k], c.fp[k], c.fn[k], c.tn[k]]).toEqual([tp, fp, fn, tn]);
    }
  });

  it('rejects mismatched volumes and labels beyond the class count', () => {
    expect(() => confusionCounts(pred, truth.subarray(1), 3)).toThrow(/prediction has 8 voxels but ground truth has 7/);
    expect(() => confusionCounts(pred, truth, 2)).toThrow(PatchFedError);
  });
});

describe('diceScores', () => {
  it('computes 2TP/(2TP+FP+FN) per class, background excluded by default', () => {
    const d = diceScores(pred, truth, 3);
    expect(d.classes).toEqual([1, 2]);
    expect(d.dice[0]).toBeCloseTo(2 / 4, 12);
    expect(d.dice[1]).toBeCloseTo(4 / 6, 12);
    const withBg = diceScores(pred, truth, 3, { includeBackground: true });
    expect(withBg.classes).toEqual([0, 1, 2]);
    expect(withBg.dice[0]).toBeCloseTo(4 / 6, 12);
  });

  it('is 1 for a perfect prediction and 0 for a disjoint one', () => {
    expect(diceScores(truth, truth, 3).dice).toEqual([1, 1]);
    const shifted = Uint8Array.from([1, 2, 2, 0, 0, 0, 1, 1]);
    expect(diceScores(shifted, truth, 3).dice).toEqual([0, 0]);
  });

  it('handles classes empty in prediction and/or ground truth according to the policy', () => {
    // class 3: absent from both; class 4: predicted but absent from the ground truth
    const t = Uint8Array.from([0, 1, 0, 0]);
    const p = Uint8Array.from([0, 1, 4, 0]);
    const def = diceScores(p, t, 5).dice; // classes 1..4
    expect(def[0]).toBe(1);
    expect(def[1]).toBeNaN(); // class 2: both empty
    expect(def[2]).toBeNaN(); // class 3: both empty
    expect(def[3]).toBe(0); // class 4: false positives only
    expect(nanMean(def)).toBe(0.5);
    const monai = diceScores(p, t, 5, { empty: 'nan-if-truth-empty' }).dice;
    expect(monai[3]).toBeNaN();
    expect(nanMean(monai)).toBe(1);
    const ones = diceScores(p, t, 5, { empty: 'one-if-both-empty' }).dice;
    expect(ones).toEqual([1, 1, 1, 0]);
    expect(diceFromCounts(0, 0, 0)).toBeNaN();
    expect(diceFromCounts(0, 0, 3)).toBe(0);
  });
});

describe('nanMean', () => {
  it('averages the non-NaN values and is NaN for none', () => {
    expect(nanMean([0.5, NaN, 1])).toBe(0.75);
    expect(nanMean([NaN, NaN])).toBeNaN();
    expect(nanMean([])).toBeNaN();
  });
});
