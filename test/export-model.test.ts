/**
 * `patchfed export`: real coordinator checkpoints of trained nets (full with batch norm, patch and
 * cascade with instance norm) become standard ONNX graphs that onnxruntime-node runs to the same
 * probabilities as the tfjs model (≤ 1e-4 max abs, on random input and on a phantom case) and,
 * through the same sliding-window code, to the same segmentation; the graph uses only standard ops
 * and describes its input in metadata_props. `--format tfjs` writes artifacts `predict` accepts, and
 * a model card goes beside every export.
 *
 * onnxruntime-node is an optional dependency: without it these tests skip, except under CI=1,
 * where they fail (CI installs it).
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointSigningPayload } from '../coordinator/store/checkpoint-meta.ts';
import { readNifti } from '../shared/nifti/index.ts';
import { SeededRandom } from '../shared/random.ts';
import { preprocessImage } from '../site-agent/data/preprocess.ts';
import { exportModel } from '../site-agent/export/export-model.ts';
import type { ModelCard } from '../site-agent/export/model-card.ts';
import { loadOnnxRuntime } from '../site-agent/export/onnx-runtime.ts';
import { maxAbsDifference, onnxStages, segmentWith } from '../site-agent/export/verify-export.ts';
import { loadModel, type LoadedModel } from '../site-agent/inference/load-model.ts';
import { predictFile, predictImage } from '../site-agent/inference/predict-file.ts';
import { defaultWindow, disposePredictionModel, type PredictionModel } from '../site-agent/inference/prediction-model.ts';
import { predictStage } from '../site-agent/inference/segment.ts';
import { guidedCase, inferenceGuidance } from '../site-agent/pipeline/guidance.ts';
import { downsampleCase } from '../site-agent/pipeline/resample.ts';
import type { CaseVolume } from '../site-agent/pipeline/case.ts';
import { BRAIN_LABELS, BRAIN_MODALITIES } from '../site-agent/phantom/index.ts';
import { runLocalTraining } from '../site-agent/run/local-training.ts';
import { runPatchfed } from './cli-fixtures.ts';
import { brainPhantom, TempDirs, useTrainingBackend, writeSiteConfig } from './learning-fixtures.ts';
import { coordinatorCheckpoint, trainOutputWeights, type CoordinatorCheckpoint } from './predict-checkpoint-fixtures.ts';

const { onnx } = onnxProto;
const ortAvailable = await loadOnnxRuntime().then(
  () => true,
  () => false,
);
if (!ortAvailable && process.env.CI) throw new Error('onnxruntime-node is not installed, but CI=1 requires the ONNX export checks to run');

const MODES = ['full', 'patch', 'cascade'] as const;
type Mode = (typeof MODES)[number];
const STAGES: Record<Mode, string[]> = { full: ['full'], patch: ['patch'], cascade: ['cascade-stage1', 'cascade-stage2'] };
const NORM: Record<Mode, 'batch' | 'instance'> = { full: 'batch', patch: 'instance', cascade: 'instance' };
const STANDARD_OPS = new Set(['Conv', 'InstanceNormalization', 'BatchNormalization', 'Relu', 'MaxPool', 'ConvTranspose', 'Concat', 'Softmax']);

const temp = new TempDirs();
let root: string;
let data: string;
let image: string;
const trained: Partial<Record<Mode, string>> = {};
const ckpt: Partial<Record<Mode, CoordinatorCheckpoint>> = {};

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`fixture missing: ${what}`);
  return v;
}

async function loaded(mode: Mode): Promise<LoadedModel> {
  const c = need(ckpt[mode], mode);
  return loadModel({ model: c.checkpointDir, coordinatorKey: c.keyFile, signingPayload: checkpointSigningPayload, patch: mode === 'full' ? undefined : [8, 8, 8] });
}

beforeAll(async () => {
  await useTrainingBackend();
  root = await temp.make('patchfed-export-');
  data = await brainPhantom(root, { shape: [20, 16, 12], cases: 5, testCases: 1 });
  image = path.join(data, 'imagesTs', readdirSync(path.join(data, 'imagesTs'))[0] ?? '');
  for (const mode of MODES) {
    const model = { mode, base: 4, depth: 2, norm: NORM[mode], cascadeFactor: 0.5 };
    const cfg = await writeSiteConfig(await temp.make(), { dataset: data, model, training: { patch: [8, 8, 8], batch: 1, learningRate: 3e-3 } });
    const dir = path.join(root, `train-${mode}`);
    await runLocalTraining({ configPath: cfg, steps: 3, outDir: dir, progress: null });
    trained[mode] = dir;
    ckpt[mode] = await coordinatorCheckpoint(trainOutputWeights(dir, STAGES[mode]), { task: 'brain phantom', labels: { ...BRAIN_LABELS }, modalities: { ...BRAIN_MODALITIES }, model });
  }
}, 240_000);

afterAll(async () => {
  for (const c of Object.values(ckpt)) c?.cleanup();
  await temp.cleanup();
});

/** Per-stage probabilities of a whole phantom case, tfjs against onnxruntime (stage 2 fed the tfjs stage-1 guidance). */
async function phantomCaseDifferences(model: PredictionModel, onnxFiles: Uint8Array[]): Promise<number[]> {
  const volume = await readNifti(image);
  const c: CaseVolume = preprocessImage('case', volume, model.schemes, model.ctStats, image);
  const sessions = await onnxStages(model, onnxFiles, 1);
  try {
    const opts = { numClasses: model.numClasses, overlap: model.overlap, blend: model.blend, divisor: model.divisor, cascadeFactor: model.cascadeFactor };
    const diffs: number[] = [];
    let input = c;
    for (const [i, s] of model.stages.entries()) {
      const patch = s.patch ?? defaultWindow(c.shape, model.divisor);
      const session = need(sessions[i], 'session');
      const stageInput = s.stage === 'cascade-stage1' ? downsampleCase(c, model.cascadeFactor, { divisor: model.divisor }) : input;
      const viaTfjs = await predictStage({ stage: s.stage, patch, net: s.net }, stageInput, opts);
      const viaOnnx = await predictStage({ stage: s.stage, patch, predictor: session.predictor }, stageInput, opts);
      diffs.push(maxAbsDifference(viaTfjs.probabilities, viaOnnx.probabilities));
      if (s.stage === 'cascade-stage1') input = guidedCase(c, inferenceGuidance(viaTfjs.probabilities, model.numClasses, stageInput.shape, c.shape), model.numClasses);
    }
    return diffs;
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
}

describe.skipIf(!ortAvailable)('patchfed export --format onnx', () => {
  for (const mode of MODES) {
    it(`exports the ${mode} model (${NORM[mode]} norm) as standard ONNX that onnxruntime runs like tfjs`, async () => {
      const l = await loaded(mode);
      try {
        const out = path.join(root, `onnx-${mode}`, 'model.onnx');
        const report = await exportModel(l, { format: 'onnx', out, verify: true, threads: 1, producerVersion: 'test' });
        const files = mode === 'cascade' ? ['model.stage1.onnx', 'model.stage2.onnx'] : ['model.onnx'];
        expect(report.files.map((f) => path.basename(f.file))).toEqual(files);
        expect(readdirSync(path.dirname(out)).sort()).toEqual([...files, 'model.card.json', 'model.card.md'].sort());
        // The export's own check: seeded random input, every stage.
        expect(report.verification?.stages.map((s) => s.stage)).toEqual(STAGES[mode]);
        for (const s of report.verification?.stages ?? []) expect(s.maxAbsDiff).toBeLessThanOrEqual(1e-4);

        const bytes = files.map((f) => new Uint8Array(readFileSync(path.join(path.dirname(out), f))));
        for (const [i, b] of bytes.entries()) {
          const m = onnx.ModelProto.decode(b);
          expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 13]]);
          const ops = new Set(m.graph?.node?.map((n) => n.opType ?? '') ?? []);
          for (const op of ops) expect(STANDARD_OPS).toContain(op);
          expect(ops).toContain(NORM[mode] === 'batch' ? 'BatchNormalization' : 'InstanceNormalization');
          expect(ops).toContain('ConvTranspose');
          const meta = Object.fromEntries(m.metadataProps.map((p) => [p.key, p.value]));
          expect(meta['patchfed.stage']).toBe(STAGES[mode][i]);
          expect(meta['input.layout']).toMatch(/^NCDHW float32 \[batch, channel, x, y, z\]/);
          const channels = JSON.parse(meta['input.channels'] ?? '[]') as string[];
          expect(channels.slice(0, 4)).toEqual(['FLAIR', 'T1w', 't1gd', 'T2w']);
          if (STAGES[mode][i] === 'cascade-stage2') expect(channels.slice(4)).toEqual(['stage-1 one-hot: edema', 'stage-1 one-hot: non-enhancing tumor', 'stage-1 one-hot: enhancing tumour']);
          expect(JSON.parse(meta['output.labels'] ?? '{}')).toEqual(BRAIN_LABELS);
          expect(JSON.parse(meta['input.normalization'] ?? '[]')).toHaveLength(4);
          expect(meta['input.spacing']).toMatch(/^native/);
          expect(meta['provenance.checkpoint_sha256']).toBe(JSON.parse(readFileSync(path.join(need(ckpt[mode], mode).checkpointDir, 'meta.json'), 'utf8')).sha256);
        }

        // Fresh random input of another shape and batch: the graph's spatial axes are dynamic.
        const sessions = await onnxStages(l.model, bytes, 1);
        try {
          for (const [i, s] of l.model.stages.entries()) {
            const C = s.net.config.inChannels;
            const shape: [number, number, number, number, number] = [3, 12, 8, 4, C];
            const x = new SeededRandom(40 + i).normalArray(shape.reduce((a, b) => a * b, 1), 2);
            const ref = await tf.tidy(() => s.net.predict(tf.tensor5d(x, shape))).data();
            const got = await need(sessions[i], 'session').predictor({ data: x, shape, origins: [] });
            expect(got).toBeInstanceOf(Float32Array);
            expect(maxAbsDifference(ref, got instanceof Float32Array ? got : [])).toBeLessThanOrEqual(1e-4);
          }
        } finally {
          await Promise.all(sessions.map((s) => s.release()));
        }
        // A phantom case, stage by stage, and the whole sliding-window segmentation.
        for (const d of await phantomCaseDifferences(l.model, bytes)) expect(d).toBeLessThanOrEqual(1e-4);
        const c = preprocessImage('case', await readNifti(image), l.model.schemes, l.model.ctStats, image);
        const sessions2 = await onnxStages(l.model, bytes, 1);
        try {
          const viaTfjs = await segmentWith(l.model, c);
          const viaOnnx = await segmentWith(l.model, c, sessions2);
          expect(viaOnnx.method).toEqual(viaTfjs.method);
          expect(Array.from(viaOnnx.labels)).toEqual(Array.from(viaTfjs.labels));
          expect(new Set(viaTfjs.labels).size).toBeGreaterThan(1); // a real segmentation, not all one class
        } finally {
          await Promise.all(sessions2.map((s) => s.release()));
        }
      } finally {
        disposePredictionModel(l.model);
      }
    });
  }

  it('runs from the CLI: verified checkpoint in, two stage graphs and a model card out, checked on a phantom image', async () => {
    const c = need(ckpt.cascade, 'cascade');
    const out = path.join(root, 'cli', 'brain.onnx');
    const r = await runPatchfed(['export', '--checkpoint', c.stateDir, '--coordinator-key', c.keyFile, '--out', out, '--patch', '8,8,8', '--verify', image, '--threads', '1']);
    expect(r.stderr).not.toMatch(/patchfed:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/verified with coordinator key/);
    expect(r.stdout).toMatch(/exported the cascade model as ONNX \(opset 13, NCDHW input\):\n  cascade-stage1: .*brain\.stage1\.onnx \(\d+ bytes, sha256 [0-9a-f]{12}…\)\n  cascade-stage2: .*brain\.stage2\.onnx/);
    expect(r.stdout).toMatch(/checked: onnxruntime [\d.]+ against the tfjs model on seeded random input \(tolerance 0\.0001\):\n  cascade-stage1: max \|Δ probability\| \d\.\d\de-\d+ on input 2x8x8x8x4/);
    expect(r.stdout).toMatch(/sliding-window segmentation through onnxruntime differs from tfjs in 0 of 3840 voxels/);
    const card = JSON.parse(readFileSync(path.join(root, 'cli', 'brain.card.json'), 'utf8')) as ModelCard;
    const meta = JSON.parse(readFileSync(path.join(c.checkpointDir, 'meta.json'), 'utf8')) as { sha256: string; signature: string };
    expect(card.checkpoint?.sha256).toBe(meta.sha256);
    expect(card.checkpoint?.signature).toBe(meta.signature);
    expect(card.checkpoint?.verified).toBe(true);
    expect(card.experiment?.id).toBe('ckpt-test');
    expect(card.strategy).toBe('fedavg');
    expect(card.sites).toBe('unknown');
    expect(card.crossSiteValidation).toBeNull();
    expect(card.model.stages.map((s) => s.channels.length)).toEqual([4, 7]);
    const md = readFileSync(path.join(root, 'cli', 'brain.card.md'), 'utf8');
    expect(md).toMatch(/^# Model card: brain phantom \(ckpt-test\)/);
    expect(md).toMatch(/### Participating sites\n\nunknown: the checkpoint does not record/);
    expect(md).toMatch(/## Cross-site validation\n\nnot available/);
  });
});

describe('patchfed export --format tfjs', () => {
  it('writes tfjs artifacts that predict accepts, segmenting exactly like the checkpoint', async () => {
    const c = need(ckpt.patch, 'patch');
    const out = path.join(root, 'tfjs-patch');
    const r = await runPatchfed(['export', '--checkpoint', c.checkpointDir, '--coordinator-key', c.keyFile, '--format', 'tfjs', '--out', out, '--patch', '8,8,8', '--verify']);
    expect(r.stderr).not.toMatch(/patchfed:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/checked: the written tfjs artifacts, re-read, against the source model on seeded random input \(tolerance 0\.0001\):\n  patch: max \|Δ probability\| 0\.00e\+0/);
    expect(existsSync(path.join(out, 'patch', 'model.json'))).toBe(true);
    expect(existsSync(path.join(out, 'model-card.md'))).toBe(true);
    const fromExport = path.join(root, 'from-export.nii.gz');
    const fromCheckpoint = path.join(root, 'from-checkpoint.nii.gz');
    await predictFile({ modelDir: out, input: image, output: fromExport });
    const l = await loaded('patch');
    try {
      await predictImage(l.model, image, fromCheckpoint);
    } finally {
      disposePredictionModel(l.model);
    }
    expect(Array.from((await readNifti(fromExport)).data)).toEqual(Array.from((await readNifti(fromCheckpoint)).data));
  });
});
