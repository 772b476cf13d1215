import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { generatePhantomDataset, MARKER_VOXELS, siteStyle } from '../site-agent/phantom/index.ts';
import { readNifti } from '../shared/nifti/index.ts';
import { isPatchFedError } from '../shared/errors.ts';
import { parseDatasetJson } from '../site-agent/data/manifest.ts';

const roots: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'patchfed-phantom-'));
  roots.push(d);
  return d;
}
afterAll(async () => {
  for (const d of roots) await rm(d, { recursive: true, force: true });
});

/** sha256 of every file under dir, keyed by relative path. */
async function digests(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out[path.relative(dir, p)] = createHash('sha256').update(await readFile(p)).digest('hex');
    }
  };
  await walk(dir);
  return out;
}

const SHAPE: [number, number, number] = [24, 24, 20];

describe('phantom dataset on disk', () => {
  it('is byte-identical for the same options, different for another seed', async () => {
    const root = await tempDir();
    const opts = { task: 'brain' as const, cases: 2, testCases: 1, shape: SHAPE, seed: 9, siteStyle: 1 };
    await generatePhantomDataset({ ...opts, out: path.join(root, 'a') });
    await generatePhantomDataset({ ...opts, out: path.join(root, 'b') });
    await generatePhantomDataset({ ...opts, seed: 10, out: path.join(root, 'c') });
    const a = await digests(path.join(root, 'a'));
    const b = await digests(path.join(root, 'b'));
    const c = await digests(path.join(root, 'c'));
    expect(Object.keys(a).sort()).toEqual([
      'dataset.json',
      'imagesTr/BRATS_s1_001.nii.gz',
      'imagesTr/BRATS_s1_002.nii.gz',
      'imagesTs/BRATS_s1_003.nii.gz',
      'labelsTr/BRATS_s1_001.nii.gz',
      'labelsTr/BRATS_s1_002.nii.gz',
    ]);
    expect(b).toEqual(a);
    expect(c['imagesTr/BRATS_s1_001.nii.gz']).not.toBe(a['imagesTr/BRATS_s1_001.nii.gz']);
  });

  it('writes an MSD brain dataset that reads back with the right types, geometry and classes', async () => {
    const out = path.join(await tempDir(), 'brain');
    const res = await generatePhantomDataset({ task: 'brain', cases: 3, shape: SHAPE, seed: 4, siteStyle: 1, out });
    expect(res.testCaseIds).toHaveLength(1); // default: 20% of 3, rounded
    const json = JSON.parse(await readFile(res.datasetJson, 'utf8'));
    expect(json.name).toBe('BRATS');
    expect(json.modality).toEqual({ '0': 'FLAIR', '1': 'T1w', '2': 't1gd', '3': 'T2w' });
    expect(json.labels).toEqual({ '0': 'background', '1': 'edema', '2': 'non-enhancing tumor', '3': 'enhancing tumour' });
    expect(json.numTraining).toBe(3);
    expect(json.numTest).toBe(1);
    expect(json.training[0]).toEqual({ image: './imagesTr/BRATS_s1_001.nii.gz', label: './labelsTr/BRATS_s1_001.nii.gz' });
    expect(json.test).toEqual(['./imagesTs/BRATS_s1_004.nii.gz']);
    expect(() => parseDatasetJson(json, res.datasetJson)).not.toThrow();
    const style = siteStyle(1);
    const seen = new Set<number>();
    for (const entry of json.training as { image: string; label: string }[]) {
      const img = await readNifti(path.join(out, entry.image));
      const lab = await readNifti(path.join(out, entry.label));
      expect(img.datatype).toBe('float32');
      expect(img.dims).toEqual([...SHAPE, 4]);
      expect(lab.datatype).toBe('uint8');
      expect(lab.dims).toEqual(SHAPE);
      for (let a = 0; a < 3; a++) expect(img.geometry.spacing[a]).toBeCloseTo(style.mri.spacing[a]!, 5);
      expect(img.geometry.affine[0][0]).toBeLessThan(0); // LPS storage
      expect(lab.geometry.affine).toEqual(img.geometry.affine);
      for (const v of lab.data) seen.add(v);
      // Labels sit on head voxels of the image (x fastest, same grid).
      const N = lab.data.length;
      let off = 0;
      for (let i = 0; i < N; i++) if (lab.data[i]! > 0 && img.data[i] === 0) off++;
      expect(off).toBe(0);
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3]);
    const testImg = await readNifti(path.join(out, json.test[0]));
    expect(testImg.dims).toEqual([...SHAPE, 4]);
  });

  it('writes an int16 liver CT dataset with liver and lesion labels', async () => {
    const out = path.join(await tempDir(), 'liver');
    const res = await generatePhantomDataset({ task: 'liver', cases: 2, testCases: 0, shape: [32, 32, 24], seed: 2, siteStyle: 0, out });
    const json = JSON.parse(await readFile(res.datasetJson, 'utf8'));
    expect(json.name).toBe('LiTS');
    expect(json.modality).toEqual({ '0': 'CT' });
    expect(json.labels).toEqual({ '0': 'background', '1': 'liver', '2': 'cancer' });
    expect(json.test).toEqual([]);
    expect(await readdir(path.join(out, 'imagesTs'))).toEqual([]);
    for (const id of res.caseIds) {
      const img = await readNifti(path.join(out, 'imagesTr', `${id}.nii.gz`));
      const lab = await readNifti(path.join(out, 'labelsTr', `${id}.nii.gz`));
      expect(img.datatype).toBe('int16');
      expect(img.dims).toEqual([32, 32, 24]);
      const values = new Set(lab.data);
      expect(values.has(1)).toBe(true);
      expect([...values].every((v) => v <= 2)).toBe(true);
      expect(Math.min(...img.data)).toBeGreaterThanOrEqual(-1024);
    }
  });

  it('plants the marker bytes in training case 0 only, at the stated voxels', async () => {
    const out = path.join(await tempDir(), 'marked');
    const res = await generatePhantomDataset({ task: 'brain', cases: 2, testCases: 1, shape: SHAPE, seed: 1, siteStyle: 0, out, marker: 31337.25 });
    const m = res.marker!;
    expect(m.caseId).toBe(res.caseIds[0]);
    expect(m.count).toBe(MARKER_VOXELS);
    expect(m.bytes).toEqual(Buffer.from(new Float32Array(MARKER_VOXELS).fill(31337.25).buffer));
    const vol = await readNifti(m.file);
    expect(Array.from(vol.data.subarray(m.firstVoxel, m.firstVoxel + m.count))).toEqual(new Array(MARKER_VOXELS).fill(31337.25));
    const raw = gunzipSync(await readFile(m.file));
    expect(raw.indexOf(m.bytes)).toBe(raw.length - vol.data.byteLength + m.firstVoxel * 4);
    for (const other of [...res.caseIds.slice(1), ...res.testCaseIds]) {
      const dir = res.caseIds.includes(other) ? 'imagesTr' : 'imagesTs';
      expect(gunzipSync(await readFile(path.join(out, dir, `${other}.nii.gz`))).indexOf(m.bytes)).toBe(-1);
    }
    // An int16 CT cannot hold a fractional marker: refused, naming the option.
    await expect(generatePhantomDataset({ task: 'liver', cases: 1, shape: SHAPE, seed: 1, siteStyle: 0, out: path.join(out, 'x'), marker: 1.5 })).rejects.toThrow(/marker/);
  });

  it('refuses a non-empty folder it did not write; --overwrite replaces its own dataset completely', async () => {
    const root = await tempDir();
    const foreign = path.join(root, 'foreign');
    await mkdir(foreign);
    await writeFile(path.join(foreign, 'notes.txt'), 'keep me');
    const err = await generatePhantomDataset({ task: 'brain', cases: 1, shape: SHAPE, seed: 1, siteStyle: 0, out: foreign }).catch((e) => e);
    expect(isPatchFedError(err)).toBe(true);
    expect(String(err.message)).toContain(foreign);
    await expect(generatePhantomDataset({ task: 'brain', cases: 1, shape: SHAPE, seed: 1, siteStyle: 0, out: foreign, overwrite: true })).rejects.toThrow(/refusing to overwrite/);
    expect(await readFile(path.join(foreign, 'notes.txt'), 'utf8')).toBe('keep me');

    const own = path.join(root, 'own');
    await generatePhantomDataset({ task: 'brain', cases: 3, testCases: 1, shape: SHAPE, seed: 1, siteStyle: 0, out: own });
    await expect(generatePhantomDataset({ task: 'brain', cases: 1, shape: SHAPE, seed: 1, siteStyle: 0, out: own })).rejects.toThrow(/not empty/);
    await generatePhantomDataset({ task: 'liver', cases: 1, testCases: 0, shape: SHAPE, seed: 1, siteStyle: 0, out: own, overwrite: true });
    expect(await readdir(path.join(own, 'imagesTr'))).toEqual(['liver_s0_001.nii.gz']);
    expect(await readdir(path.join(own, 'imagesTs'))).toEqual([]);
  });

  it('validates options before allocating anything', async () => {
    const out = path.join(await tempDir(), 'never');
    const base = { task: 'brain' as const, cases: 1, shape: SHAPE, seed: 1, siteStyle: 0, out };
    const cases: [object, RegExp][] = [
      [{ cases: 0 }, /cases/],
      [{ shape: [24, 24] }, /shape/],
      [{ shape: [4, 24, 24] }, /shape\[0\]/],
      [{ shape: [1024, 1024, 1024] }, /voxels/],
      [{ task: 'lung' }, /task/],
      [{ siteStyle: -1 }, /siteStyle/],
      [{ seed: 1.5 }, /seed/],
    ];
    for (const [patch, msg] of cases) {
      const err = await generatePhantomDataset({ ...base, ...patch } as Parameters<typeof generatePhantomDataset>[0]).catch((e) => e);
      expect(isPatchFedError(err), JSON.stringify(patch)).toBe(true);
      expect(err.message).toMatch(msg);
    }
    await expect(readdir(out)).rejects.toThrow(/ENOENT/);
  });
});
