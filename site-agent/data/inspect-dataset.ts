/**
 * Full inspection of an MSD dataset for `patchfed inspect`: the header scan plus a decode of
 * every file, one case at a time (memory stays at one case), to count label voxels per class and
 * catch what headers cannot show (NaN/Inf voxels, undeclared label values).
 * The JSON form's keys are documented in INSPECT.md; keep the two in step.
 */
import path from 'node:path';
import { BadCaseError, asCaseStep, decodeImage, decodeLabel } from './decode.ts';
import type { DatasetProblem, LabelClass } from './manifest.ts';
import { imageLayout } from './preprocess.ts';
import { readOptionsFor } from './memory-budget.ts';
import { scanMsdDataset } from './scan.ts';

export interface InspectedCase {
  id: string;
  image: string;
  label: string;
  shape: [number, number, number];
  channels: number;
  spacing: [number, number, number];
  imageDatatype: string;
  labelDatatype: string;
  usable: boolean;
  /** Voxels per label value ("0", "1", ...); null when the case could not be decoded. */
  labelCounts: Record<string, number> | null;
}

export interface InspectedTestImage {
  id: string;
  image: string;
  shape: [number, number, number];
  channels: number;
  spacing: [number, number, number];
  imageDatatype: string;
  usable: boolean;
}

export interface DatasetInspection {
  kind: 'msd-dataset';
  dir: string;
  name: string;
  modalities: string[];
  labels: LabelClass[];
  /** numTraining as declared in dataset.json (null when absent). */
  numTraining: number | null;
  /** Entries in dataset.json's `training` list. */
  listedTraining: number;
  usableCases: number;
  cases: InspectedCase[];
  /** Entries in dataset.json's `test` list. */
  listedTest: number;
  /** Voxels per label value summed over usable cases. */
  labelTotals: Record<string, number>;
  testImages: InspectedTestImage[];
  problems: { caseId: string | null; file: string; reason: string }[];
}

export interface InspectDatasetOptions {
  maxVoxels?: number;
  /** Memory budget in MB; cases whose decoding would need more are reported as problems. */
  maxMemoryMB?: number;
  /** Progress: called before each file group is decoded. */
  onProgress?: (done: number, total: number, id: string) => void;
}

export async function inspectMsdDataset(dir: string, opts: InspectDatasetOptions = {}): Promise<DatasetInspection> {
  const scan = await scanMsdDataset(dir, { maxVoxels: opts.maxVoxels, maxMemoryMB: opts.maxMemoryMB });
  const read = readOptionsFor(opts.maxVoxels, opts.maxMemoryMB);
  const problems: DatasetProblem[] = [...scan.problems];
  const total = scan.cases.length + scan.testImages.length;
  let done = 0;
  const labelTotals: Record<string, number> = Object.fromEntries(scan.labels.map((l) => [String(l.value), 0]));
  // Paths in the report are relative to the dataset folder (printed once as `dir`).
  const relative = (p: string) => path.relative(scan.dir, p).split(path.sep).join('/');

  const cases: InspectedCase[] = [];
  for (const info of [...scan.cases].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    opts.onProgress?.(done++, total, info.id);
    let labelCounts: Record<string, number> | null = null;
    try {
      const label = await decodeLabel(info, scan.labels, read);
      const image = await decodeImage(info.id, info.imagePath, read);
      await asCaseStep(info.id, info.imagePath, () => {
        const { shape } = imageLayout(image.dims, info.imagePath);
        if (shape.some((v, i) => v !== info.shape[i])) throw new BadCaseError({ caseId: info.id, file: info.imagePath, reason: `decoded shape ${shape.join('x')} differs from the header's ${info.shape.join('x')}` });
      });
      labelCounts = Object.fromEntries([...label.counts].map(([v, n]) => [String(v), n]));
      for (const [v, n] of label.counts) labelTotals[String(v)] = (labelTotals[String(v)] ?? 0) + n;
    } catch (e) {
      if (!(e instanceof BadCaseError)) throw e;
      problems.push(e.problem);
    }
    cases.push({
      id: info.id,
      image: relative(info.imagePath),
      label: relative(info.labelPath),
      shape: info.shape,
      channels: info.channels,
      spacing: info.spacing,
      imageDatatype: info.imageDatatype,
      labelDatatype: info.labelDatatype,
      usable: labelCounts !== null,
      labelCounts,
    });
  }

  const testImages: InspectedTestImage[] = [];
  for (const info of scan.testImages) {
    opts.onProgress?.(done++, total, info.id);
    let usable = true;
    try {
      await decodeImage(info.id, info.imagePath, read);
    } catch (e) {
      if (!(e instanceof BadCaseError)) throw e;
      problems.push(e.problem);
      usable = false;
    }
    testImages.push({ id: info.id, image: relative(info.imagePath), shape: info.shape, channels: info.channels, spacing: info.spacing, imageDatatype: info.imageDatatype, usable });
  }

  return {
    kind: 'msd-dataset',
    dir: scan.dir,
    name: scan.name,
    modalities: scan.modalities,
    labels: scan.labels,
    numTraining: scan.declaredNumTraining ?? null,
    listedTraining: scan.listedTrainingCount,
    usableCases: cases.filter((c) => c.usable).length,
    cases,
    listedTest: scan.listedTestCount,
    labelTotals,
    testImages,
    problems: problems.map((p) => ({ caseId: p.caseId ?? null, file: relative(p.file), reason: p.reason })),
  };
}
