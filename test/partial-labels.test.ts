/**
 * Partial annotation (issue 15): the marginal loss (site-agent/train/marginal-loss.ts), the
 * annotation resolved against a dataset's labels (site-agent/data/annotated-labels.ts), partially
 * annotated phantoms and the dataset loader's check, and `simulate --site-labels` parsing.
 * No training here (cheap: a few small tensors and two 16×16×12 phantoms).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '../site-agent/backend/gradients/index.ts';
import { afterAll, describe, expect, it } from 'vitest';
import { SiteConfigSchema } from '../shared/config/site.ts';
import { readNifti } from '../shared/nifti/index.ts';
import { annotatedDice, annotatedLabelMap, describeAnnotation, resolveAnnotation } from '../site-agent/data/annotated-labels.ts';
import { openMsdDataset } from '../site-agent/data/index.ts';
import { generatePhantomDataset, phantomLabelClasses } from '../site-agent/phantom/index.ts';
import { softDiceLoss } from '../site-agent/train/loss.ts';
import { marginalize } from '../site-agent/train/marginal-loss.ts';
import { annotatedLabelsForSite, parseSiteLabelsOption } from '../cli/simulate/options.ts';

const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

const BRAIN = phantomLabelClasses('brain');
/** A brain site that never draws non-enhancing tumour (class 2): stored as background. */
const OMIT_2 = [0, 1, 0, 2];
/** A brain site that draws only the whole tumour (classes 1, 2, 3 → one channel). */
const WHOLE = [0, 1, 1, 1];

/** Dice (background excluded) + cross-entropy, the default training loss, on merged channels. */
function trainingLoss(logits: tf.Tensor, target: tf.Tensor, channelOf?: readonly number[]): tf.Scalar {
  const [p, y] = marginalize(tf.softmax(logits), target, channelOf);
  const ce = tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(tf.add(p, 1e-7))), -1)));
  return tf.add(softDiceLoss(p, y, { includeBackground: false }), ce) as tf.Scalar;
}

/** Random logits and a one-hot target over `ids` on a [1,4,4,3] grid, seeded. */
function sample(seed: number, ids: readonly number[]): { logits: tf.Tensor; target: tf.Tensor; labels: number[] } {
  const n = 4 * 4 * 3;
  const labels = Array.from({ length: n }, (_, i) => ids[(i * 7 + seed) % ids.length] ?? 0);
  return {
    logits: tf.randomNormal([1, 4, 4, 3, 4], 0, 1, 'float32', seed),
    target: tf.tidy(() => tf.cast(tf.oneHot(tf.tensor4d(labels, [1, 4, 4, 3], 'int32'), 4), 'float32')),
    labels,
  };
}

describe('marginal loss', () => {
  it('is the plain loss when every class is annotated (identity or no mapping)', () => {
    const { logits, target } = sample(3, [0, 1, 2, 3]);
    const plain = trainingLoss(logits, target).dataSync()[0];
    const none = tf.tidy(() => trainingLoss(logits, target, undefined).dataSync()[0]);
    const identity = tf.tidy(() => trainingLoss(logits, target, [0, 1, 2, 3]).dataSync()[0]);
    expect(none).toBe(plain); // same code path: bit-identical
    expect(identity).toBeCloseTo(plain ?? NaN, 5);
    tf.dispose([logits, target]);
  });

  it('does not push an unannotated class toward background; the plain loss does', () => {
    // Ground truth of the omit-class-2 site: ids 0, 1, 3 only (class 2 drawn as background).
    const { logits, target } = sample(5, [0, 1, 3]);
    const gradOf = (channelOf?: readonly number[]) =>
      tf.tidy(() => {
        const g = tf.grad((z: tf.Tensor) => trainingLoss(z, target, channelOf))(logits);
        const p = tf.softmax(logits);
        // Softmax: ∂L/∂z_k = p_k·(g_channel(k) − Σ_j p_j g_channel(j)). Classes sharing a channel
        // (background and class 2 here) have equal ∂L/∂z_k / p_k: no preference between them.
        const ratio = tf.div(g, p);
        const bg = tf.slice(ratio, [0, 0, 0, 0, 0], [-1, -1, -1, -1, 1]);
        const c2 = tf.slice(ratio, [0, 0, 0, 0, 2], [-1, -1, -1, -1, 1]);
        return tf.max(tf.abs(tf.sub(c2, bg))).dataSync()[0] ?? NaN;
      });
    const before = tf.memory().numTensors;
    expect(gradOf(OMIT_2)).toBeLessThan(1e-5);
    // The plain loss prefers background over class 2 on those voxels: a real preference, not noise.
    expect(gradOf(undefined)).toBeGreaterThan(1e-3);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([logits, target]);
  });

  it('is unchanged when probability moves between the classes of one channel (whole tumour)', () => {
    const { logits, target } = sample(9, [0, 1]);
    // Swap the logits of classes 1 and 2: different per-class probabilities, same whole-tumour mass.
    const swapped = tf.tidy(() => tf.gather(logits, [0, 2, 1, 3], 4));
    const a = tf.tidy(() => trainingLoss(logits, target, WHOLE).dataSync()[0] ?? NaN);
    const b = tf.tidy(() => trainingLoss(swapped, target, WHOLE).dataSync()[0] ?? NaN);
    const plainA = tf.tidy(() => trainingLoss(logits, target).dataSync()[0] ?? NaN);
    const plainB = tf.tidy(() => trainingLoss(swapped, target).dataSync()[0] ?? NaN);
    expect(Math.abs(a - b)).toBeLessThan(1e-5);
    expect(Math.abs(plainA - plainB)).toBeGreaterThan(1e-3);
    tf.dispose([logits, target, swapped]);
  });

  it('refuses a mapping of the wrong length', () => {
    const { logits, target } = sample(1, [0, 1]);
    expect(() => tf.tidy(() => trainingLoss(logits, target, [0, 1, 1]))).toThrow(/4 predicted classes but the site's annotation maps 3/);
    tf.dispose([logits, target]);
  });
});

describe('annotatedLabels', () => {
  it('resolves single classes and merged groups into channels', () => {
    const whole = resolveAnnotation([{ name: 'whole tumour', labels: [1, 2, 3] }], BRAIN);
    expect(whole.channelOf).toEqual(WHOLE);
    expect(whole.channels.map((c) => c.storedId)).toEqual([0, 1]);
    expect(describeAnnotation(whole)).toBe('whole tumour (1+2+3)');
    const omit = resolveAnnotation([1, 3], BRAIN);
    expect(omit.channelOf).toEqual(OMIT_2);
    expect(omit.unannotated).toEqual([2]);
    expect(omit.channels[0]?.classes).toEqual([0, 2]);
  });

  it('names the bad id and the reason', () => {
    expect(() => resolveAnnotation([1, 7], BRAIN, 'site-c annotatedLabels')).toThrow(/site-c annotatedLabels: unknown label id 7; the dataset's foreground labels are 1 \(edema\), 2 \(non-enhancing tumor\), 3 \(enhancing tumour\)/);
    expect(() => resolveAnnotation([1, { name: 'core', labels: [1, 3] }], BRAIN)).toThrow(/label id 1 \(edema\) is listed twice/);
    const zero = SiteConfigSchema.safeParse({ siteId: 'a', dataset: 'd', memoryBudgetMB: 64, annotatedLabels: [0, 1] });
    expect(zero.success).toBe(false);
    expect(zero.error?.issues[0]?.message).toMatch(/label 0 is background/);
    const single = SiteConfigSchema.safeParse({ siteId: 'a', dataset: 'd', memoryBudgetMB: 64, annotatedLabels: [{ name: 'whole', labels: [2] }] });
    expect(single.error?.issues[0]?.message).toMatch(/at least 2 classes/);
    expect(SiteConfigSchema.parse({ siteId: 'a', dataset: 'd', memoryBudgetMB: 64, annotatedLabels: [{ name: 'whole tumour', labels: [1, 2, 3] }] }).annotatedLabels).toHaveLength(1);
  });

  it('maps a prediction like the truth and scores only the annotated classes', () => {
    const omit = resolveAnnotation([1, 3], BRAIN);
    expect([...annotatedLabelMap(Uint8Array.from([0, 1, 2, 3]), omit)]).toEqual([0, 1, 0, 3]);
    expect(annotatedDice([0.5, 0.7, 0.9], omit)).toEqual([0.5, NaN, 0.9]);
    const whole = resolveAnnotation([{ name: 'whole tumour', labels: [1, 2, 3] }], BRAIN);
    expect([...annotatedLabelMap(Uint8Array.from([0, 1, 2, 3]), whole)]).toEqual([0, 1, 1, 1]);
    expect(annotatedDice([0.8, 0, 0], whole)).toEqual([0.8, NaN, NaN]);
    expect(annotatedDice([0.1, 0.2], null)).toEqual([0.1, 0.2]);
  });
});

describe('partially annotated phantoms and the loader', () => {
  const root = mkdtempSync(join(tmpdir(), 'patchfed-partial-'));
  roots.push(root);

  it('writes whole-tumour labels with the same tumour voxels, and the loader knows them', async () => {
    const common = { task: 'brain' as const, cases: 2, testCases: 0, shape: [16, 16, 12] as [number, number, number], seed: 4, siteStyle: 0 };
    const full = await generatePhantomDataset({ ...common, out: join(root, 'full') });
    const whole = await generatePhantomDataset({ ...common, out: join(root, 'whole'), annotatedLabels: [{ name: 'whole tumour', labels: [1, 2, 3] }] });
    const id = full.caseIds[0] ?? '';
    const a = await readNifti(join(full.dir, 'labelsTr', `${id}.nii.gz`));
    const b = await readNifti(join(whole.dir, 'labelsTr', `${id}.nii.gz`));
    const values = new Set(b.data);
    expect([...values].sort()).toEqual([0, 1]);
    let tumour = 0;
    for (let i = 0; i < a.data.length; i++) {
      expect(b.data[i]).toBe((a.data[i] ?? 0) > 0 ? 1 : 0);
      if ((a.data[i] ?? 0) > 1) tumour++;
    }
    expect(tumour).toBeGreaterThan(0); // the full phantom had classes 2/3 to merge

    const ds = await openMsdDataset(whole.dir, { annotatedLabels: [{ name: 'whole tumour', labels: [1, 2, 3] }] });
    expect(ds.annotation?.channelOf).toEqual(WHOLE);
    expect((await ds.load(id)).label.length).toBe(16 * 16 * 12);
    expect((await openMsdDataset(full.dir)).annotation).toBeNull();
    expect((await openMsdDataset(full.dir, { annotatedLabels: [1, 2, 3] })).annotation).toBeNull();
  });

  it('refuses unknown ids, and cases holding classes the site says it does not annotate', async () => {
    const dir = join(root, 'full');
    await expect(openMsdDataset(dir, { annotatedLabels: [1, 9] })).rejects.toThrow(/unknown label id 9/);
    const ds = await openMsdDataset(dir, { annotatedLabels: [1] });
    const problems: string[] = [];
    for (const c of ds.cases) {
      await ds.load(c.id).catch((e: unknown) => problems.push(e instanceof Error ? e.message : String(e)));
    }
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]).toMatch(/which annotatedLabels says this site does not annotate/);
  });
});

describe('simulate --site-labels', () => {
  it('parses all, whole-tumour and id lists, cycled over the sites', () => {
    const specs = parseSiteLabelsOption('all, whole-tumour,1+3', 'brain');
    expect(specs).toEqual(['all', 'whole-tumour', [1, 3]]);
    if (typeof specs === 'string') throw new Error(specs);
    expect(annotatedLabelsForSite(0, 'brain', specs)).toBeUndefined();
    expect(annotatedLabelsForSite(1, 'brain', specs)).toEqual([{ name: 'whole tumour', labels: [1, 2, 3] }]);
    expect(annotatedLabelsForSite(4, 'liver', specs)).toEqual([{ name: 'whole liver', labels: [1, 2] }]);
    expect(annotatedLabelsForSite(5, 'brain', specs)).toEqual([1, 3]);
    expect(annotatedLabelsForSite(2, 'brain', undefined)).toBeUndefined();
  });

  it('rejects bad entries with the reason', () => {
    expect(parseSiteLabelsOption('all,tumour', 'brain')).toMatch(/--site-labels takes one entry per site.*got 'tumour'/);
    expect(parseSiteLabelsOption('1+3', 'liver')).toMatch(/--site-labels '1\+3': unknown label id 3; the dataset's foreground labels are 1 \(liver\), 2 \(cancer\)/);
    expect(parseSiteLabelsOption('1+1', 'brain')).toMatch(/listed twice/);
    expect(parseSiteLabelsOption('0+1', 'brain')).toMatch(/label 0 is background/);
    expect(parseSiteLabelsOption('', 'brain')).toMatch(/got ''/);
  });
});
