/**
 * The memory budget of NIfTI reading: every read allocates only after checking that what it is
 * about to hold fits the budget (`maxMemoryBytes`, default DEFAULT_MEMORY_BUDGET_BYTES), so a
 * small .nii.gz promising gigabytes is refused before anything is allocated — instead of a
 * 3 GB peak. The CLI takes the budget from `--max-memory`, the site agent from memoryBudgetMB.
 */
import { PatchFedError } from '../errors.ts';
import { DEFAULT_MEMORY_BUDGET_BYTES, type NiftiHeader } from './types.ts';

function mb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MB`;
}

/** Throws NIFTI_TOO_LARGE when `needBytes` exceed the budget; `what` says what needs them. */
export function checkMemoryBudget(file: string, header: NiftiHeader, needBytes: number, budgetBytes: number | undefined, what: string): void {
  const budget = budgetBytes ?? DEFAULT_MEMORY_BUDGET_BYTES;
  if (needBytes <= budget) return;
  throw new PatchFedError(
    'NIFTI_TOO_LARGE',
    `${file}: ${what} needs ${mb(needBytes)} of memory (${header.dims.join('×')} ${header.datatype}${header.scaling.applied ? ', scaled to float32' : ''}), over the memory budget of ${mb(budget)} (--max-memory, or the site's memoryBudgetMB)`,
    { subject: file },
  );
}

/** A budget in MB (CLI option, site config) as bytes. */
export function budgetBytesFromMB(mb: number): number {
  return Math.floor(mb * 2 ** 20);
}
