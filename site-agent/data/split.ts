/**
 * Deterministic train/validation/test split (60/20/20) that depends only on the seed and the
 * set of case ids, never on their order: ids are ranked by sha256(`${seed}:${id}`) and the
 * ranking is cut into three parts.
 */
import { createHash } from 'node:crypto';

export interface DatasetSplit {
  train: string[];
  validation: string[];
  test: string[];
}

/**
 * Sizes for n cases. validation = test = round(0.2 n), but at least 1 each when n >= 3 so no
 * part is empty; train gets the rest (>= 1). Small n: 1 -> 1/0/0, 2 -> 1/1/0, 3 -> 1/1/1,
 * 4 -> 2/1/1, 5 -> 3/1/1, 7 -> 5/1/1, 8 -> 4/2/2, 10 -> 6/2/2.
 */
export function splitSizes(n: number): { train: number; validation: number; test: number } {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`splitSizes: n must be a non-negative integer, got ${n}`);
  if (n === 0) return { train: 0, validation: 0, test: 0 };
  if (n === 1) return { train: 1, validation: 0, test: 0 };
  if (n === 2) return { train: 1, validation: 1, test: 0 };
  const part = Math.max(1, Math.round(0.2 * n));
  return { train: n - 2 * part, validation: part, test: part };
}

function rankKey(seed: string, id: string): string {
  return createHash('sha256').update(`${seed}:${id}`).digest('hex');
}

/** Split case ids; each part is returned sorted by id so listings are readable and stable. */
export function splitCaseIds(ids: readonly string[], seed: string | number): DatasetSplit {
  const unique = [...new Set(ids)];
  const seedText = String(seed);
  const ranked = unique
    .map((id) => ({ id, key: rankKey(seedText, id) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map((r) => r.id);
  const sizes = splitSizes(ranked.length);
  const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return {
    train: ranked.slice(0, sizes.train).sort(byId),
    validation: ranked.slice(sizes.train, sizes.train + sizes.validation).sort(byId),
    test: ranked.slice(sizes.train + sizes.validation).sort(byId),
  };
}
