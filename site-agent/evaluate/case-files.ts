/**
 * Pairs prediction and label files by case name: the file name without `.nii` / `.nii.gz`
 * (the dataset layer's case id rule), so `BRATS_001.nii.gz` in the prediction folder is scored
 * against `BRATS_001.nii.gz` (or `.nii`) in the label folder.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { caseIdFromPath } from '../data/manifest.ts';

export interface CasePair {
  caseId: string;
  prediction: string;
  label: string;
}

export interface CasePairing {
  /** Sorted by case id. */
  pairs: CasePair[];
  /** Case ids with a label file but no prediction. */
  missingPredictions: string[];
  /** Case ids with a prediction but no label file. */
  missingLabels: string[];
}

/** Case id → file, for every .nii / .nii.gz directly inside `dir`. */
export function listNiftiCases(dir: string, what: string): Map<string, string> {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new PatchFedError('evaluate-not-a-folder', `${what} ${dir} is not a folder`, { subject: dir });
    names = readdirSync(dir);
  } catch (e) {
    if (e instanceof PatchFedError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new PatchFedError('evaluate-folder', `${what} ${dir} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(e)})`}`, { subject: dir });
  }
  const cases = new Map<string, string>();
  for (const name of names.sort()) {
    if (!/\.nii(\.gz)?$/i.test(name) || name.startsWith('.')) continue;
    const file = path.join(dir, name);
    if (!statSync(file).isFile()) continue;
    const id = caseIdFromPath(name);
    const other = cases.get(id);
    if (other !== undefined) {
      throw new PatchFedError('evaluate-duplicate-case', `${what} ${dir} holds two files for case '${id}': ${path.basename(other)} and ${name}; keep one`, { subject: file });
    }
    cases.set(id, file);
  }
  return cases;
}

export function pairCaseFiles(predDir: string, labelsDir: string): CasePairing {
  const preds = listNiftiCases(predDir, 'prediction folder');
  const labels = listNiftiCases(labelsDir, 'label folder');
  const pairs: CasePair[] = [];
  const missingLabels: string[] = [];
  for (const [caseId, prediction] of preds) {
    const label = labels.get(caseId);
    if (label === undefined) missingLabels.push(caseId);
    else pairs.push({ caseId, prediction, label });
  }
  const missingPredictions = [...labels.keys()].filter((id) => !preds.has(id));
  const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  pairs.sort((a, b) => byId(a.caseId, b.caseId));
  if (pairs.length === 0) {
    throw new PatchFedError(
      'evaluate-no-pairs',
      `no case has both a prediction in ${predDir} (${preds.size} NIfTI file(s)) and a label in ${labelsDir} (${labels.size}); files are paired by name without .nii/.nii.gz`,
    );
  }
  return { pairs, missingPredictions: missingPredictions.sort(byId), missingLabels: missingLabels.sort(byId) };
}
