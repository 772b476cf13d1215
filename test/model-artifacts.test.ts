import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { loadModelArtifacts, readModelArtifacts, saveModelArtifacts, type ModelJson } from '../site-agent/model/artifacts.ts';
import { UNet3D } from '../site-agent/model/unet.ts';
import { randomTensor, useCpu } from './ops-fixtures.ts';

const root = mkdtempSync(path.join(tmpdir(), 'patchfed-artifacts-'));
let model: UNet3D;
const meta = { mode: 'patch', labels: ['background', 'tumour'], modalities: ['FLAIR', 'T1'], patch: [8, 8, 4] };

beforeAll(async () => {
  await useCpu();
  model = new UNet3D({ inChannels: 2, numClasses: 2, base: 2, depth: 2, seed: 9 });
  // Move running statistics away from their defaults so the round trip covers them.
  const x = randomTensor([1, 4, 4, 4, 2], 70, 2, 1) as tf.Tensor5D;
  tf.dispose([model.forward(x, true), x]);
});
afterAll(() => {
  model.dispose();
  rmSync(root, { recursive: true, force: true });
});

function savedCopy(name: string): string {
  const dir = path.join(root, name);
  saveModelArtifacts(dir, model, meta);
  return dir;
}

describe('model artifacts', () => {
  it('round trip restores config, metadata, every weight and the predictions', () => {
    const dir = savedCopy('roundtrip');
    expect(readdirSync(dir).sort()).toEqual(['model.json', 'weights.bin']); // no temp files left
    const loaded = loadModelArtifacts(dir);
    try {
      expect(loaded.config).toEqual(model.config);
      expect(loaded.meta).toEqual(meta);
      expect(loaded.generatedBy).toMatch(/^PatchFed /);
      expect(loaded.model.getWeights()).toEqual(model.getWeights());
      const x = randomTensor([1, 4, 4, 4, 2], 71) as tf.Tensor5D;
      const a = model.predict(x);
      const b = loaded.model.predict(x);
      expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
      tf.dispose([x, a, b]);
    } finally {
      loaded.model.dispose();
    }
  });

  it('model.json is a tfjs weights manifest that tf.io.decodeWeights can read', () => {
    const dir = savedCopy('tfjs');
    const json = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8')) as ModelJson;
    expect(json.format).toBe('patchfed-unet3d');
    expect(json.modelTopology).toMatchObject({ inChannels: 2, numClasses: 2, base: 2, depth: 2, norm: 'batch' });
    expect(json.userDefinedMetadata).toEqual(meta);
    expect(json.weightsManifest).toHaveLength(1);
    expect(json.weightsManifest[0]!.paths).toEqual(['weights.bin']);
    const bin = readFileSync(path.join(dir, 'weights.bin'));
    const buffer = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
    const decoded = tf.io.decodeWeights(buffer, json.weightsManifest[0]!.weights);
    const ours = model.getWeights();
    ours.manifest.forEach((spec, i) => {
      expect(decoded[spec.name]!.shape).toEqual(spec.shape);
      expect(decoded[spec.name]!.dataSync()).toEqual(ours.values[i]);
    });
    tf.dispose(Object.values(decoded));
  });

  it('overwriting an existing model replaces both files', () => {
    const dir = savedCopy('overwrite');
    const other = new UNet3D({ inChannels: 2, numClasses: 2, base: 2, depth: 2, seed: 10 });
    saveModelArtifacts(dir, other, { mode: 'full' });
    const back = readModelArtifacts(dir);
    expect(back.weights.values).toEqual(other.getWeights().values);
    expect(back.meta).toEqual({ mode: 'full' });
    other.dispose();
  });

  const refusals: Array<[string, (dir: string) => void, RegExp]> = [
    ['missing model.json', (d) => rmSync(path.join(d, 'model.json')), /model\.json: file is missing/],
    ['missing weights.bin', (d) => rmSync(path.join(d, 'weights.bin')), /weights\.bin: file is missing/],
    ['truncated weights.bin', (d) => truncateSync(path.join(d, 'weights.bin'), 100), /weights\.bin: weights have 100 bytes; the manifest describes \d+/],
    ['oversized weights.bin', (d) => writeFileSync(path.join(d, 'weights.bin'), Buffer.alloc(10_000_000)), /weights\.bin: weights are larger/],
    ['NaN in weights.bin', (d) => {
      const f = path.join(d, 'weights.bin');
      const b = readFileSync(f);
      b.writeFloatLE(Number.NaN, 4 * 10);
      writeFileSync(f, b);
    }, /weights\.bin: tensor 'enc0\/conv1\/kernel' has a non-finite value \(NaN\) at index 10/],
    ['garbage model.json', (d) => writeFileSync(path.join(d, 'model.json'), '{"format": '), /model\.json: not valid JSON/],
    ['foreign format', (d) => editJson(d, (j) => ((j as { format: string }).format = 'keras')), /format is "keras"/],
    ['bad topology', (d) => editJson(d, (j) => (j.modelTopology.depth = 0)), /invalid modelTopology: .*depth/],
    ['renamed tensor', (d) => editJson(d, (j) => (j.weightsManifest[0]!.weights[2]!.name = 'x')), /tensor 2 should be 'enc0\/norm1\/gamma'/],
    ['path outside the directory', (d) => editJson(d, (j) => (j.weightsManifest[0]!.paths = ['../weights.bin'])), /must be a plain file name/],
    ['float16 dtype', (d) => editJson(d, (j) => ((j.weightsManifest[0]!.weights[0] as { dtype: string }).dtype = 'float16')), /only float32/],
  ];
  for (const [what, damage, message] of refusals) {
    it(`refuses ${what} with a PatchFedError naming the file`, () => {
      const dir = savedCopy(what.replace(/\W+/g, '-'));
      damage(dir);
      let error: unknown;
      try {
        readModelArtifacts(dir);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(PatchFedError);
      expect((error as PatchFedError).message).toMatch(message);
      expect((error as PatchFedError).subject).toMatch(/model\.json$|weights\.bin$/);
    });
  }

  it('refuses metadata that is not JSON and leaves no files behind', () => {
    const dir = path.join(root, 'bad-meta');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => saveModelArtifacts(dir, model, cyclic)).toThrow(/not JSON-serialisable/);
    expect(existsSync(path.join(dir, 'model.json'))).toBe(false);
  });
});

function editJson(dir: string, edit: (j: ModelJson) => void): void {
  const f = path.join(dir, 'model.json');
  const j = JSON.parse(readFileSync(f, 'utf8')) as ModelJson;
  edit(j);
  writeFileSync(f, JSON.stringify(j));
}
