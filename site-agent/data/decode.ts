/**
 * Full decode of one case's files, turning every user-caused failure (unreadable file, NaN/Inf
 * voxels refused by the reader, label values not declared, shape drift since the header scan)
 * into a DatasetProblem so callers can skip the case and report it.
 */
import { PatchFedError, isPatchFedError } from '../../shared/errors.ts';
import { readNifti, type NiftiReadOptions, type NiftiVolume } from '../../shared/nifti/index.ts';
import type { DatasetProblem, LabelClass } from './manifest.ts';
import { convertLabel, imageLayout, type LabelConversion } from './preprocess.ts';
import type { MsdCaseInfo } from './scan.ts';

/** A case that turned out unusable while decoding; `problem` says which file and why. */
export class BadCaseError extends PatchFedError {
  constructor(readonly problem: DatasetProblem) {
    super('dataset-bad-case', `case ${problem.caseId ?? '?'}: ${problem.file}: ${problem.reason}`, { subject: problem.file });
  }
}

function reasonOf(e: PatchFedError, file: string): string {
  return e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message;
}

/** Run `fn`; a PatchFedError about `file` becomes a BadCaseError for `caseId`. */
export async function asCaseStep<T>(caseId: string, file: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof BadCaseError) throw e;
    if (isPatchFedError(e)) throw new BadCaseError({ caseId, file, reason: reasonOf(e, file) });
    throw e;
  }
}

/** `read`: the reader's limits (maxVoxels, the memory budget; see memory-budget.ts readOptionsFor). */
export async function decodeImage(caseId: string, file: string, read: NiftiReadOptions = {}): Promise<NiftiVolume> {
  return asCaseStep(caseId, file, () => readNifti(file, read));
}

/** Decode and validate the label of a case; the image must already be known to match in shape. */
export async function decodeLabel(info: MsdCaseInfo, labels: readonly LabelClass[], read: NiftiReadOptions = {}): Promise<LabelConversion & { volume: NiftiVolume }> {
  const volume = await decodeImage(info.id, info.labelPath, read);
  return asCaseStep(info.id, info.labelPath, () => {
    const layout = imageLayout(volume.dims, info.labelPath);
    if (layout.shape.some((v, i) => v !== info.shape[i])) {
      throw new PatchFedError('shape-mismatch', `label shape ${layout.shape.join('x')} does not match image shape ${info.shape.join('x')} (${info.imagePath})`);
    }
    return { ...convertLabel(volume, labels, info.labelPath), volume };
  });
}
