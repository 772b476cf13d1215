import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { caseIdFromPath, readDatasetManifest } from '../site-agent/data/manifest.ts';
import { tempDir, type FixtureDataset } from './dataset-fixtures.ts';

const base = {
  name: 'Task01_BrainTumour',
  modality: { '0': 'FLAIR', '1': 'T1w', '2': 't1gd', '3': 'T2w' },
  labels: { '0': 'background', '1': 'edema', '2': 'non-enhancing tumor', '3': 'enhancing tumour' },
  numTraining: 2,
  training: [
    { image: './imagesTr/BRATS_001.nii.gz', label: './labelsTr/BRATS_001.nii.gz' },
    { image: 'imagesTr/BRATS_002.nii.gz', label: 'labelsTr/BRATS_002.nii.gz' },
  ],
  test: ['./imagesTs/BRATS_485.nii.gz'],
};

let ds: FixtureDataset | undefined;
afterEach(async () => {
  await ds?.cleanup();
  ds = undefined;
});

async function manifestOf(json: unknown) {
  ds = await tempDir();
  await writeFile(path.join(ds.dir, 'dataset.json'), typeof json === 'string' ? json : JSON.stringify(json));
  return readDatasetManifest(ds.dir);
}

async function errorOf(json: unknown): Promise<PatchFedError> {
  try {
    await manifestOf(json);
  } catch (e) {
    expect(e).toBeInstanceOf(PatchFedError);
    return e as PatchFedError;
  }
  throw new Error('expected readDatasetManifest to throw');
}

describe('dataset.json', () => {
  it('reads MSD keys, resolves paths against the folder and derives case ids', async () => {
    const m = await manifestOf(base);
    expect(m.name).toBe('Task01_BrainTumour');
    expect(m.modalities).toEqual(['FLAIR', 'T1w', 't1gd', 'T2w']);
    expect(m.labels.map((l) => l.value)).toEqual([0, 1, 2, 3]);
    expect(m.training.map((c) => c.id)).toEqual(['BRATS_001', 'BRATS_002']);
    expect(m.training[0]!.imagePath).toBe(path.join(ds!.dir, 'imagesTr', 'BRATS_001.nii.gz'));
    expect(m.training[1]!.labelPath).toBe(path.join(ds!.dir, 'labelsTr', 'BRATS_002.nii.gz'));
    expect(m.test).toEqual([{ id: 'BRATS_485', imagePath: path.join(ds!.dir, 'imagesTs', 'BRATS_485.nii.gz') }]);
    expect(m.problems).toEqual([]);
  });

  it('derives ids from file names only', () => {
    expect(caseIdFromPath('./imagesTr/liver_17.nii.gz')).toBe('liver_17');
    expect(caseIdFromPath('a/b/hippocampus_001.nii')).toBe('hippocampus_001');
  });

  it('names a missing dataset.json', async () => {
    ds = await tempDir();
    await expect(readDatasetManifest(ds.dir)).rejects.toThrow(/dataset\.json: not found/);
  });

  it('names invalid JSON', async () => {
    const e = await errorOf('{ "name": ');
    expect(e.code).toBe('dataset-json-invalid');
    expect(e.message).toMatch(/dataset\.json is not valid JSON/);
  });

  it('lists each schema violation with its field', async () => {
    const e = await errorOf({ ...base, name: '', modality: { '0': 'CT', '2': 'PET' }, training: [{ image: 'x.nii.gz' }] });
    expect(e.code).toBe('dataset-json-invalid');
    expect(e.message).toMatch(/not a valid MSD dataset\.json/);
    expect(e.message).toMatch(/name: must not be empty/);
    expect(e.message).toMatch(/modality: keys must be the channel indices 0\.\.1 without gaps/);
    expect(e.message).toMatch(/training\[0\]\.label: /);
  });

  it('requires a background label and integer label keys', async () => {
    expect((await errorOf({ ...base, labels: { '1': 'tumour' } })).message).toMatch(/labels: must define label "0" \(background\)/);
    expect((await errorOf({ ...base, labels: { '0': 'bg', one: 'x' } })).message).toMatch(/labels: keys must be integer label values 0\.\.255; got "one"/);
    expect((await errorOf({ ...base, labels: { '0': 'bg', '300': 'x' } })).message).toMatch(/"300"/);
  });

  it('requires at least one training case', async () => {
    expect((await errorOf({ ...base, training: [] })).message).toMatch(/training: must list at least one/);
  });

  it('reports (not throws) paths outside the folder, duplicate ids and a wrong numTraining', async () => {
    const m = await manifestOf({
      ...base,
      numTraining: 5,
      training: [
        ...base.training,
        { image: '../elsewhere/BRATS_009.nii.gz', label: './labelsTr/BRATS_009.nii.gz' },
        { image: '/etc/BRATS_010.nii.gz', label: './labelsTr/BRATS_010.nii.gz' },
        { image: './other/BRATS_001.nii.gz', label: './labelsTr/BRATS_001b.nii.gz' },
      ],
    });
    expect(m.training.map((c) => c.id)).toEqual(['BRATS_001', 'BRATS_002']);
    const reasons = m.problems.map((p) => `${p.caseId ?? '-'} ${p.reason}`);
    expect(reasons).toEqual([
      expect.stringMatching(/^BRATS_009 training\[2\]: path '\.\.\/elsewhere\/BRATS_009\.nii\.gz' points outside the dataset folder/),
      expect.stringMatching(/^BRATS_010 training\[3\]: path '\/etc\/BRATS_010\.nii\.gz' is absolute/),
      expect.stringMatching(/^BRATS_001 training\[4\]: case id 'BRATS_001' is already used/),
    ]);
  });

  it('flags numTraining that disagrees with the list', async () => {
    const m = await manifestOf({ ...base, numTraining: 3 });
    expect(m.problems).toEqual([{ file: path.join(ds!.dir, 'dataset.json'), reason: "numTraining is 3 but 'training' lists 2 cases" }]);
  });

  it('ignores unknown MSD keys and a missing test list', async () => {
    const { test: _omit, ...rest } = base;
    const m = await manifestOf({ ...rest, description: 'x', reference: 'y', licence: 'CC', release: '1.0', tensorImageSize: '4D', numTest: 0 });
    expect(m.test).toEqual([]);
  });
});
