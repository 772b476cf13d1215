/**
 * dataset.json of a Medical Segmentation Decathlon (MSD) dataset: schema, parsing and
 * resolution of the listed paths. Nothing here touches image files.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { PatchFedError } from '../../shared/errors.ts';

const INDEX_KEY = /^(0|[1-9]\d*)$/;

/** {"0": "FLAIR", "1": "T1w"}: keys must be exactly 0..C-1 (the channel order of the 4-D images). */
const modalitySchema = z
  .record(z.string(), z.string().trim().min(1, 'a modality name must not be empty'))
  .superRefine((rec, ctx) => {
    const keys = Object.keys(rec);
    if (keys.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'must name at least one modality (e.g. {"0": "CT"})' });
      return;
    }
    const bad = keys.filter((k) => !INDEX_KEY.test(k));
    if (bad.length > 0) {
      ctx.addIssue({ code: 'custom', message: `keys must be channel indices "0", "1", ...; got ${bad.map((k) => JSON.stringify(k)).join(', ')}` });
      return;
    }
    const indices = keys.map(Number).sort((a, b) => a - b);
    if (indices.some((v, i) => v !== i)) {
      ctx.addIssue({ code: 'custom', message: `keys must be the channel indices 0..${keys.length - 1} without gaps; got ${indices.join(', ')}` });
    }
  });

/** {"0": "background", "1": "edema"}: label values are integers 0..255 (stored as uint8), 0 is background. */
const labelsSchema = z
  .record(z.string(), z.string().trim().min(1, 'a label name must not be empty'))
  .superRefine((rec, ctx) => {
    const keys = Object.keys(rec);
    const bad = keys.filter((k) => !INDEX_KEY.test(k) || Number(k) > 255);
    if (bad.length > 0) {
      ctx.addIssue({ code: 'custom', message: `keys must be integer label values 0..255; got ${bad.map((k) => JSON.stringify(k)).join(', ')}` });
      return;
    }
    if (!('0' in rec)) ctx.addIssue({ code: 'custom', message: 'must define label "0" (background)' });
    else if (keys.length < 2) ctx.addIssue({ code: 'custom', message: 'must define at least one foreground label besides "0"' });
  });

const relativePath = z.string().trim().min(1, 'a path must not be empty');

export const datasetJsonSchema = z.object({
  name: z.string().trim().min(1, 'must not be empty'),
  modality: modalitySchema,
  labels: labelsSchema,
  numTraining: z.number().int().nonnegative().optional(),
  training: z.array(z.object({ image: relativePath, label: relativePath })).min(1, 'must list at least one {image, label} case'),
  test: z.array(relativePath).optional().default([]),
});

export type DatasetJson = z.infer<typeof datasetJsonSchema>;

export interface LabelClass {
  value: number;
  name: string;
}

/** A listed case before any file is opened. Paths are absolute. */
export interface ListedTrainingCase {
  id: string;
  imagePath: string;
  labelPath: string;
}

export interface ListedTestImage {
  id: string;
  imagePath: string;
}

/** Something wrong with one case (or with the dataset as a whole when caseId is absent). */
export interface DatasetProblem {
  caseId?: string;
  /** Absolute path of the file the problem is about. */
  file: string;
  reason: string;
}

export interface DatasetManifest {
  dir: string;
  jsonPath: string;
  name: string;
  /** Modality names in channel order. */
  modalities: string[];
  /** Label classes sorted by value. */
  labels: LabelClass[];
  declaredNumTraining?: number;
  /** Entries in dataset.json's `training` list, including ones dropped for listing problems. */
  listedTrainingCount: number;
  training: ListedTrainingCase[];
  /** Entries in dataset.json's `test` list. */
  listedTestCount: number;
  test: ListedTestImage[];
  /** Listing problems (bad paths, duplicate ids, numTraining mismatch); those entries are dropped. */
  problems: DatasetProblem[];
}

/**
 * Case id from a file name: the base name without `.nii.gz` / `.nii`
 * ("./imagesTr/BRATS_001.nii.gz" -> "BRATS_001"). Depends on the name only, so it is stable
 * whatever the order or the folder layout of the listing.
 */
export function caseIdFromPath(p: string): string {
  const base = p.replace(/\\/g, '/').split('/').pop() ?? p;
  return base.replace(/\.nii(\.gz)?$/i, '');
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.length > 0 ? issue.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`)).join('').replace(/^\./, '') : '(top level)';
      return `  ${where}: ${issue.message}`;
    })
    .join('\n');
}

/** Validate an already-parsed dataset.json value; `source` names the file in messages. */
export function parseDatasetJson(value: unknown, source: string): DatasetJson {
  const result = datasetJsonSchema.safeParse(value);
  if (!result.success) {
    throw new PatchFedError('dataset-json-invalid', `${source} is not a valid MSD dataset.json:\n${formatIssues(result.error)}`, { subject: source });
  }
  return result.data;
}

/**
 * Resolve a listed path against the dataset folder. Listed paths must stay inside the folder:
 * a dataset.json is data, and must not make the site read arbitrary files.
 */
function resolveListedPath(dir: string, listed: string): string | { reason: string } {
  if (path.isAbsolute(listed)) return { reason: `path '${listed}' is absolute; dataset.json paths must be relative to the dataset folder` };
  const resolved = path.resolve(dir, listed);
  const rel = path.relative(dir, resolved);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    return { reason: `path '${listed}' points outside the dataset folder` };
  }
  if (!/\.nii(\.gz)?$/i.test(listed)) return { reason: `path '${listed}' is not a .nii or .nii.gz file` };
  return resolved;
}

export async function readDatasetManifest(dir: string): Promise<DatasetManifest> {
  const absDir = path.resolve(dir);
  const jsonPath = path.join(absDir, 'dataset.json');
  let text: string;
  try {
    text = await readFile(jsonPath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'not found' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? String(e)})`;
    throw new PatchFedError('dataset-json-missing', `${jsonPath}: ${why}; a dataset folder must contain an MSD dataset.json`, { subject: jsonPath });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new PatchFedError('dataset-json-invalid', `${jsonPath} is not valid JSON: ${(e as Error).message}`, { subject: jsonPath });
  }
  const json = parseDatasetJson(raw, jsonPath);

  const modalities = Object.entries(json.modality)
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([, name]) => name);
  const labels = Object.entries(json.labels)
    .map(([value, name]) => ({ value: Number(value), name }))
    .sort((a, b) => a.value - b.value);

  const problems: DatasetProblem[] = [];
  const training: ListedTrainingCase[] = [];
  const seen = new Map<string, string>();
  json.training.forEach((entry, index) => {
    const id = caseIdFromPath(entry.image);
    const image = resolveListedPath(absDir, entry.image);
    const label = resolveListedPath(absDir, entry.label);
    const bad = typeof image === 'string' ? (typeof label === 'string' ? undefined : label) : image;
    if (bad) {
      problems.push({ caseId: id, file: jsonPath, reason: `training[${index}]: ${bad.reason}` });
      return;
    }
    const imagePath = image as string;
    const first = seen.get(id);
    if (first !== undefined) {
      problems.push({ caseId: id, file: imagePath, reason: `training[${index}]: case id '${id}' is already used by ${first}; case ids come from image file names and must be unique` });
      return;
    }
    seen.set(id, imagePath);
    training.push({ id, imagePath, labelPath: label as string });
  });

  const test: ListedTestImage[] = [];
  const seenTest = new Set<string>();
  json.test.forEach((listed, index) => {
    const id = caseIdFromPath(listed);
    const image = resolveListedPath(absDir, listed);
    if (typeof image !== 'string') {
      problems.push({ caseId: id, file: jsonPath, reason: `test[${index}]: ${image.reason}` });
      return;
    }
    if (seenTest.has(id)) {
      problems.push({ caseId: id, file: image, reason: `test[${index}]: test image id '${id}' is listed twice` });
      return;
    }
    seenTest.add(id);
    test.push({ id, imagePath: image });
  });

  if (json.numTraining !== undefined && json.numTraining !== json.training.length) {
    // Not fatal: a site often holds a subset of a public dataset and edits the list only.
    problems.push({ file: jsonPath, reason: `numTraining is ${json.numTraining} but 'training' lists ${json.training.length} cases` });
  }

  return {
    dir: absDir,
    jsonPath,
    name: json.name,
    modalities,
    labels,
    declaredNumTraining: json.numTraining,
    listedTrainingCount: json.training.length,
    training,
    listedTestCount: json.test.length,
    test,
    problems,
  };
}
