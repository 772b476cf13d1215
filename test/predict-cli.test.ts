/**
 * `patchfed predict`: checkpoints written by `patchfed train` (full, patch, cascade) segment a
 * NIfTI image into a uint8 file on the input's grid; mismatched checkpoints are refused.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNifti, writeNifti } from '../shared/nifti/index.ts';
import { openMsdDataset } from '../site-agent/data/index.ts';
import { loadModelArtifacts } from '../site-agent/model/artifacts.ts';
import { segmentCase } from '../site-agent/inference/segment.ts';
import { predictFile } from '../site-agent/inference/predict-file.ts';
import { runLocalTraining } from '../site-agent/run/local-training.ts';
import { brainPhantom, TempDirs, useTrainingBackend, writeSiteConfig } from './learning-fixtures.ts';
import { runPatchfed } from './cli-fixtures.ts';

const temp = new TempDirs();
let root: string;
let data: string;
let image: string;
let caseId: string;
const trained: Record<'full' | 'patch' | 'cascade', string> = { full: '', patch: '', cascade: '' };

const cli = (args: string[]) => runPatchfed(args);

beforeAll(async () => {
  await useTrainingBackend();
  root = await temp.make('patchfed-predict-');
  data = await brainPhantom(root, { shape: [20, 16, 12] });
  caseId = 'BRATS_s2_001';
  image = path.join(data, 'imagesTr', `${caseId}.nii.gz`);
  // Train each mode briefly the way `patchfed train` does (the cascade through the CLI itself).
  for (const mode of ['full', 'patch'] as const) {
    const cfg = await writeSiteConfig(await temp.make(), { dataset: data, model: { mode, base: 4, depth: 2 }, training: { patch: [8, 8, 8], batch: 1, learningRate: 3e-3 } });
    trained[mode] = path.join(root, `model-${mode}`);
    await runLocalTraining({ configPath: cfg, steps: 2, outDir: trained[mode], progress: null });
  }
  const cfg = await writeSiteConfig(await temp.make(), { dataset: data, model: { mode: 'cascade', base: 4, depth: 2, cascadeFactor: 0.5 }, training: { patch: [8, 8, 8], batch: 1, learningRate: 3e-3 } });
  trained.cascade = path.join(root, 'model-cascade');
  const r = await cli(['train', '--config', cfg, '--steps', '3', '--out', trained.cascade]);
  expect(r.stderr).not.toMatch(/internal error/);
  expect(r.code).toBe(0);
  // Not a TTY: plain progress lines, one per stage at least, ending at the last step.
  expect(r.stderr).toMatch(/cascade-stage1 \[#+\] 3\/3 loss \d+\.\d{4} [\d.]+k vox\/s ETA 0m00s/);
  expect(r.stderr).toMatch(/cascade-stage2 \[#+\] 3\/3 loss/);
  expect(r.stdout).toMatch(/^trained cascade on /);
}, 180_000);
afterAll(() => temp.cleanup());

describe('patchfed predict', () => {
  for (const mode of ['full', 'patch', 'cascade'] as const) {
    it(`writes a uint8 segmentation on the input's grid from a ${mode} checkpoint, equal to in-process segmentation`, async () => {
      const out = path.join(root, `seg-${mode}.nii.gz`);
      const report = await predictFile({ modelDir: trained[mode], input: image, output: out });
      expect(report.mode).toBe(mode);
      expect(report.stages).toEqual(mode === 'cascade' ? ['cascade-stage1', 'cascade-stage2'] : [mode]);
      const src = await readNifti(image);
      const seg = await readNifti(out);
      expect(seg.datatype).toBe('uint8');
      expect(seg.dims).toEqual(src.dims.slice(0, 3));
      expect(seg.geometry.affine).toEqual(src.geometry.affine);
      expect([seg.geometry.qformCode, seg.geometry.sformCode]).toEqual([src.geometry.qformCode, src.geometry.sformCode]);
      seg.geometry.spacing.forEach((d, a) => expect(d).toBeCloseTo(src.geometry.spacing[a]!, 5));
      for (const v of seg.data) expect(v).toBeLessThan(4);

      // Same labels, voxel for voxel, as segmenting the dataset's own preprocessed case (so the
      // file is in NIfTI order, not the pipeline's row-major one).
      const ds = await openMsdDataset(data);
      const c = await ds.load(caseId);
      const stages = (mode === 'cascade' ? ['cascade-stage1', 'cascade-stage2'] : [mode]).map((s) => loadModelArtifacts(path.join(trained[mode], s)));
      try {
        const toModel = (a: (typeof stages)[number]) => ({ net: a.model, stage: a.meta.stage as never, patch: a.meta.patch as [number, number, number] });
        const main = toModel(stages[stages.length - 1]!);
        const expected = await segmentCase(stages.length === 2 ? { stage1: toModel(stages[0]!), main } : { main }, c, {
          numClasses: 4, overlap: 0.5, blend: 'gaussian', divisor: 2, cascadeFactor: 0.5,
        });
        const [X, Y, Z] = c.shape;
        let same = 0;
        for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) if (seg.data[x + X * (y + Y * z)] === expected.labels[(x * Y + y) * Z + z]) same++;
        expect(same).toBe(X * Y * Z);
      } finally {
        for (const s of stages) s.model.dispose();
      }
    });
  }

  it('runs from the CLI and says which inference it used (sliding window or non-overlapping)', async () => {
    const out = path.join(root, 'cli-seg.nii');
    const slide = await cli(['predict', '--model', trained.cascade, '--in', image, '--out', out]);
    expect(slide.stderr).not.toMatch(/patchfed:/);
    expect(slide.code).toBe(0);
    expect(slide.stdout).toMatch(/with a cascade checkpoint .* -> .*cli-seg\.nii \(uint8, input's affine\)/);
    expect(slide.stdout).toMatch(/inference: stage 1 \(factor 0\.5, 10x8x6\): whole volume zero-padded to 10x8x6/);
    expect(slide.stdout).toMatch(/inference: cascade-stage2: sliding window 8x8x8 over 20x16x12, overlap 0\.5/);
    const grid = await cli(['predict', '--model', path.join(trained.patch, 'patch'), '--in', image, '--out', out, '--overlap', '0', '--json']);
    expect(grid.code).toBe(0);
    const report = JSON.parse(grid.stdout) as { method: string[]; backend: { name: string }; labelVoxels: Record<string, number> };
    expect(report.method).toEqual(['patch: non-overlapping 8x8x8 patches over 20x16x12 (last patch per axis zero-padded), 12 patch(es)']);
    expect(Object.values(report.labelVoxels).reduce((a, b) => a + b, 0)).toBe(20 * 16 * 12);
  });

  it('refuses an image whose channels do not match the checkpoint, naming both', async () => {
    const src = await readNifti(image);
    const [X, Y, Z] = src.dims as [number, number, number, number];
    const three = path.join(root, 'three-channels.nii.gz');
    await writeNifti(three, { data: (src.data as Float32Array).slice(0, X * Y * Z * 3), dims: [X, Y, Z, 3], datatype: 'float32' }, src.geometry);
    const r = await cli(['predict', '--model', trained.patch, '--in', three, '--out', path.join(root, 'never.nii.gz')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^patchfed: .*three-channels\.nii\.gz has 3 channel\(s\) \(dims 20x16x12x3\) but checkpoint .*patch expects 4 input channel\(s\) \(FLAIR, T1w, t1gd, T2w\)$/m);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/); // no stack trace
  });

  it("refuses a checkpoint whose labels differ from the image's dataset.json", async () => {
    const other = path.join(root, 'other-dataset');
    await mkdir(path.join(other, 'imagesTs'), { recursive: true });
    const json = JSON.parse(await readFile(path.join(data, 'dataset.json'), 'utf8'));
    json.labels = { '0': 'background', '1': 'liver', '2': 'cancer', '3': 'vessel' };
    await writeFile(path.join(other, 'dataset.json'), JSON.stringify(json));
    const r = await cli(['predict', '--model', trained.full, '--in', image, '--out', path.join(root, 'never.nii.gz'), '--dataset', other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^patchfed: checkpoint .* predicts labels \[background, edema, non-enhancing tumor, enhancing tumour\] but .*other-dataset\/dataset\.json declares \[background, liver, cancer, vessel\]$/m);
    // And a stage-2 model without its stage 1 is refused rather than guessed.
    const lone = await predictFile({ modelDir: path.join(root, 'nowhere'), input: image, output: path.join(root, 'never.nii.gz') }).catch((e) => e);
    expect(lone.message).toMatch(/--model .*nowhere: no such checkpoint directory/);
  });
});
