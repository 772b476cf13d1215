/**
 * `patchfed predict` from coordinator checkpoints: real checkpoints written by a real coordinator
 * (patch and cascade, from trained nets) predict a folder and a single file exactly like the
 * `patchfed train` output holding the same weights; a key verifies them and a tampered artifact,
 * a tampered meta.json or another coordinator's key is refused naming the file and the reason;
 * without a key the output says the checkpoint was not verified. FedBN checkpoints need a site's
 * local normalisation tensors; CT checkpoints need a site's statistics.
 */
import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWeights } from '../shared/codec/index.ts';
import { generateKeyPairs, writeKeyFiles } from '../shared/crypto/keys.ts';
import { initialValues } from '../shared/model/index.ts';
import { readNifti } from '../shared/nifti/index.ts';
import { isNormalisationRole, type NamedWeights } from '../shared/weights.ts';
import { loadModel } from '../site-agent/inference/load-model.ts';
import { predictImage, predictFile } from '../site-agent/inference/predict-file.ts';
import { disposePredictionModel } from '../site-agent/inference/prediction-model.ts';
import { SiteContext } from '../site-agent/inference/site-context.ts';
import { BRAIN_LABELS, BRAIN_MODALITIES, LIVER_LABELS, LIVER_MODALITIES, generatePhantomDataset } from '../site-agent/phantom/index.ts';
import { runLocalTraining } from '../site-agent/run/local-training.ts';
import { checkpointSigningPayload } from '../coordinator/store/checkpoint-meta.ts';
import { runPatchfed } from './cli-fixtures.ts';
import { brainPhantom, TempDirs, useTrainingBackend, writeSiteConfig } from './learning-fixtures.ts';
import { coordinatorCheckpoint, trainOutputWeights, type CoordinatorCheckpoint } from './predict-checkpoint-fixtures.ts';

const temp = new TempDirs();
let root: string;
let data: string;
const trained = { patch: '', cascade: '' };
const ckpt: Partial<Record<'patch' | 'cascade' | 'fedbn', CoordinatorCheckpoint>> = {};
const model = (mode: 'patch' | 'cascade') => ({ mode, base: 4, depth: 2, norm: 'instance' as const, cascadeFactor: 0.5 });
const brainExperiment = { task: 'brain phantom', labels: { ...BRAIN_LABELS }, modalities: { ...BRAIN_MODALITIES } };

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`fixture missing: ${what}`);
  return v;
}

/** Reference segmentation: the train output (same weights) on the same image. */
async function reference(trainDir: string, image: string, patch?: string): Promise<Uint8Array> {
  const out = path.join(root, `ref-${path.basename(trainDir)}-${path.basename(image)}`);
  await predictFile({ modelDir: patch ? path.join(trainDir, patch) : trainDir, input: image, output: out });
  return (await readNifti(out)).data as Uint8Array;
}

beforeAll(async () => {
  await useTrainingBackend();
  root = await temp.make('patchfed-predict-ckpt-');
  data = await brainPhantom(root, { shape: [20, 16, 12], cases: 5, testCases: 2 });
  for (const mode of ['patch', 'cascade'] as const) {
    const cfg = await writeSiteConfig(await temp.make(), { dataset: data, model: model(mode), training: { patch: [8, 8, 8], batch: 1, learningRate: 3e-3 } });
    trained[mode] = path.join(root, `train-${mode}`);
    await runLocalTraining({ configPath: cfg, steps: 3, outDir: trained[mode], progress: null });
    const stages = mode === 'cascade' ? ['cascade-stage1', 'cascade-stage2'] : ['patch'];
    ckpt[mode] = await coordinatorCheckpoint(trainOutputWeights(trained[mode], stages), { ...brainExperiment, model: model(mode) });
  }
  // FedBN: the global's normalisation tensors stay at their initial values; a site keeps its own.
  const local = trainOutputWeights(trained.patch, ['patch']);
  const global: NamedWeights = { manifest: local.manifest, values: local.values.map((v, i) => (isNormalisationRole(need(local.manifest[i], 'spec').role) ? initialValues(need(local.manifest[i], 'spec'), 0) : v)) };
  ckpt.fedbn = await coordinatorCheckpoint(global, { ...brainExperiment, model: model('patch'), strategy: { name: 'fedbn' } });
  writeFileSync(path.join(root, 'site-a-local.pfw'), encodeWeights(local));
}, 240_000);

afterAll(async () => {
  for (const c of Object.values(ckpt)) c?.cleanup();
  await temp.cleanup();
});

describe('patchfed predict with a coordinator checkpoint', () => {
  it('verifies a cascade checkpoint and predicts a folder, one file per case, equal to the train output with the same weights', async () => {
    const c = need(ckpt.cascade, 'cascade checkpoint');
    const out = path.join(root, 'preds-cascade');
    const r = await runPatchfed(['predict', '--model', c.checkpointDir, '--coordinator-key', c.keyFile, '--input', path.join(data, 'imagesTr'), '--out', out, '--patch', '8,8,8']);
    expect(r.stderr).not.toMatch(/patchfed:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/checkpoint v1 \(round 0\) of experiment 'ckpt-test', sha256 [0-9a-f]{12}…: signatures of meta\.json and experiment\.json, size and sha256 verified with coordinator key [0-9a-f:]{19}/);
    expect(r.stdout).toMatch(/normalisation: FLAIR, T1w, t1gd, T2w: per-case z-score over the non-zero voxels/);
    expect(r.stdout).toMatch(/normalisation layers: instance norm/);
    expect(r.stdout).toMatch(/windows: cascade-stage1: whole volume; cascade-stage2: sliding window 8x8x8 \(--patch\)/);
    expect(r.stdout).toMatch(/predicted 5 of 5 case\(s\) into /);
    // Not a TTY: the progress bar is plain lines on stderr, from 0 to the last case.
    expect(r.stderr).toMatch(/predict \[-+\] 0\/5 cases/);
    expect(r.stderr).toMatch(/predict \[#+\] 5\/5 cases ETA 0m00s/);
    const images = readdirSync(path.join(data, 'imagesTr')).sort();
    expect(readdirSync(out).sort()).toEqual(images);
    for (const f of images) {
      expect(r.stdout).toMatch(new RegExp(`^${f.replace('.nii.gz', '')}  20x16x12  [\\d.]+ s  -> .*${f}  \\(voxels: edema \\d+, non-enhancing tumor \\d+, enhancing tumour \\d+\\)$`, 'm'));
      const src = await readNifti(path.join(data, 'imagesTr', f));
      const seg = await readNifti(path.join(out, f));
      expect(seg.datatype).toBe('uint8');
      expect(seg.dims).toEqual(src.dims.slice(0, 3));
      expect(seg.geometry.affine).toEqual(src.geometry.affine);
      expect(Array.from(seg.data)).toEqual(Array.from(await reference(trained.cascade, path.join(data, 'imagesTr', f))));
    }
  });

  it('takes the newest checkpoint of a state directory, and says the checkpoint was not verified without a key', async () => {
    const c = need(ckpt.patch, 'patch checkpoint');
    const image = path.join(data, 'imagesTs', readdirSync(path.join(data, 'imagesTs'))[0] ?? '');
    const out = path.join(root, 'single.nii.gz');
    const r = await runPatchfed(['predict', '--model', c.stateDir, '--in', image, '--out', out, '--patch', '8,8,8']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/checkpoint: .*v000001 \(the newest of 1 checkpoint version\(s\) in .*checkpoints\)/);
    expect(r.stdout).toMatch(/NOT VERIFIED — no coordinator key given \(--coordinator-key or --site-config\), so its signatures were not checked/);
    expect(r.stdout).toMatch(/with a patch checkpoint .* -> .*single\.nii\.gz \(uint8, input's affine\)/);
    expect(Array.from((await readNifti(out)).data)).toEqual(Array.from(await reference(trained.patch, image, 'patch')));
  });

  it('refuses a tampered weights.pfw, a tampered meta.json and another coordinator\'s key, naming the file and the reason', async () => {
    const c = need(ckpt.patch, 'patch checkpoint');
    const image = path.join(data, 'imagesTr', readdirSync(path.join(data, 'imagesTr'))[0] ?? '');
    const copy = (name: string) => {
      const d = path.join(root, name);
      cpSync(c.checkpointDir, d, { recursive: true });
      return d;
    };
    const tampered = copy('tampered-weights');
    const w = readFileSync(path.join(tampered, 'weights.pfw'));
    w[w.length - 3] = (w[w.length - 3] ?? 0) ^ 0x40; // one bit of the last tensor's values
    writeFileSync(path.join(tampered, 'weights.pfw'), w);
    const never = path.join(root, 'never.nii.gz');
    const r1 = await runPatchfed(['predict', '--model', tampered, '--coordinator-key', c.keyFile, '--in', image, '--out', never]);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/^patchfed: .*tampered-weights\/weights\.pfw: sha256 [0-9a-f]{64}, but meta\.json says [0-9a-f]{64} \(corrupted or replaced\); refusing the checkpoint$/m);
    expect(r1.stderr).not.toMatch(/at .*\.ts:\d+/);

    // Re-labelling a checkpoint as another round breaks meta.json's signature (in-process: no backend needed to refuse).
    const relabelled = copy('tampered-meta');
    const meta = JSON.parse(readFileSync(path.join(relabelled, 'meta.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(relabelled, 'meta.json'), JSON.stringify({ ...meta, round: 7 }));
    const e2 = await loadModel({ model: relabelled, coordinatorKey: c.keyFile, signingPayload: checkpointSigningPayload }).catch((e: unknown) => e);
    expect(String(e2)).toMatch(/tampered-meta\/meta\.json: signature does not verify with the coordinator key [0-9a-f:]+ \(--coordinator-key .*coordinator\.pub\); refusing the checkpoint/);

    const other = generateKeyPairs();
    const otherPrefix = path.join(root, 'other-coordinator');
    writeKeyFiles(otherPrefix, other);
    const r3 = await runPatchfed(['predict', '--model', c.checkpointDir, '--coordinator-key', `${otherPrefix}.pub`, '--in', image, '--out', never]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/^patchfed: .*v000001\/experiment\.json: not signed by the coordinator key [0-9a-f:]+ \(--coordinator-key .*other-coordinator\.pub\); refusing the checkpoint$/m);
  });

  it('refuses a FedBN checkpoint without a site\'s normalisation tensors, and uses them from --local-model', async () => {
    const c = need(ckpt.fedbn, 'fedbn checkpoint');
    const image = path.join(data, 'imagesTs', readdirSync(path.join(data, 'imagesTs'))[0] ?? '');
    const out = path.join(root, 'fedbn.nii.gz');
    const r = await runPatchfed(['predict', '--model', c.checkpointDir, '--coordinator-key', c.keyFile, '--in', image, '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^patchfed: .*v000001: trained with FedBN, where every site keeps its own normalisation-layer tensors \(γ and β\) and the coordinator never averages them, .*pass --local-model/m);
    const { model: m } = await loadModel({ model: c.checkpointDir, coordinatorKey: c.keyFile, signingPayload: checkpointSigningPayload, localModel: path.join(root, 'site-a-local.pfw'), patch: [8, 8, 8] });
    try {
      expect(m.notes.join('\n')).toMatch(/normalisation layers: FedBN — instance norm with the site's local γ and β \(12 tensors\) from --local-model .*site-a-local\.pfw; every other tensor from the global checkpoint/);
      await predictImage(m, image, out);
    } finally {
      disposePredictionModel(m);
    }
    expect(Array.from((await readNifti(out)).data)).toEqual(Array.from(await reference(trained.patch, image, 'patch')));
  });

  it("normalises CT with a site's own statistics from --site-config, and refuses without them", async () => {
    const liverRoot = await temp.make('patchfed-predict-ct-');
    const liver = path.join(liverRoot, 'data');
    await generatePhantomDataset({ task: 'liver', cases: 4, testCases: 1, shape: [16, 16, 8], seed: 3, siteStyle: 1, out: liver });
    const cfg = await writeSiteConfig(liverRoot, { dataset: liver, model: { mode: 'patch', base: 4, depth: 2, norm: 'instance', cascadeFactor: 0.5 }, training: { patch: [8, 8, 8], batch: 1, learningRate: 3e-3 } });
    const trainDir = path.join(liverRoot, 'train');
    await runLocalTraining({ configPath: cfg, steps: 2, outDir: trainDir, progress: null });
    const c = await coordinatorCheckpoint(trainOutputWeights(trainDir, ['patch']), { task: 'liver phantom', labels: { ...LIVER_LABELS }, modalities: { ...LIVER_MODALITIES }, model: model('patch') });
    try {
      const e = await loadModel({ model: c.checkpointDir, patch: [8, 8, 8] }).catch((x: unknown) => x);
      expect(String(e)).toMatch(/v000001: the sites normalised CT with dataset-wide foreground statistics that each computed from its own labelled cases, which never leave a site, so a coordinator checkpoint cannot carry them; pass --site-config/);
      const image = path.join(liver, 'imagesTs', readdirSync(path.join(liver, 'imagesTs'))[0] ?? '');
      const { model: m } = await loadModel({ model: c.checkpointDir, patch: [8, 8, 8], site: new SiteContext(cfg) });
      const out = path.join(liverRoot, 'ct.nii.gz');
      try {
        expect(m.notes.join('\n')).toMatch(/normalisation: CT clip \[-?[\d.]+, [\d.]+\], mean [\d.]+, std [\d.]+: foreground-percentile clipping and z-score with test-site's own dataset-wide foreground statistics/);
        await predictImage(m, image, out);
      } finally {
        disposePredictionModel(m);
      }
      const ref = path.join(liverRoot, 'ref.nii.gz');
      await predictFile({ modelDir: trainDir, input: image, output: ref });
      expect(Array.from((await readNifti(out)).data)).toEqual(Array.from((await readNifti(ref)).data));
    } finally {
      c.cleanup();
    }
  });
});
