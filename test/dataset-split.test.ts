import { describe, expect, it } from 'vitest';
import { splitCaseIds, splitSizes } from '../site-agent/data/split.ts';

const ids = (n: number) => Array.from({ length: n }, (_, i) => `CASE_${String(i).padStart(3, '0')}`);

function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('splitSizes', () => {
  it('gives 60/20/20 for round numbers and keeps every part non-empty from 3 cases', () => {
    expect(splitSizes(10)).toEqual({ train: 6, validation: 2, test: 2 });
    expect(splitSizes(100)).toEqual({ train: 60, validation: 20, test: 20 });
    expect(splitSizes(1)).toEqual({ train: 1, validation: 0, test: 0 });
    expect(splitSizes(2)).toEqual({ train: 1, validation: 1, test: 0 });
    expect(splitSizes(3)).toEqual({ train: 1, validation: 1, test: 1 });
    expect(splitSizes(4)).toEqual({ train: 2, validation: 1, test: 1 });
    for (let n = 3; n <= 60; n++) {
      const s = splitSizes(n);
      expect(s.train + s.validation + s.test).toBe(n);
      expect(Math.min(s.train, s.validation, s.test)).toBeGreaterThanOrEqual(1);
      expect(s.train).toBeGreaterThanOrEqual(s.validation);
    }
  });
});

describe('splitCaseIds', () => {
  it('partitions the ids: disjoint, complete, sized by splitSizes', () => {
    const all = ids(23);
    const s = splitCaseIds(all, 7);
    expect([...s.train, ...s.validation, ...s.test].sort()).toEqual(all);
    expect(new Set([...s.train, ...s.validation, ...s.test]).size).toBe(23);
    const sizes = splitSizes(23);
    expect([s.train.length, s.validation.length, s.test.length]).toEqual([sizes.train, sizes.validation, sizes.test]);
  });

  it('is the same for the same seed whatever the order of the ids', () => {
    const all = ids(37);
    const a = splitCaseIds(all, 'site-a');
    for (const seed of [1, 2, 3]) expect(splitCaseIds(shuffled(all, seed), 'site-a')).toEqual(a);
    expect(splitCaseIds([...all].reverse(), 'site-a')).toEqual(a);
  });

  it('changes with the seed', () => {
    const all = ids(30);
    expect(splitCaseIds(all, 1).test).not.toEqual(splitCaseIds(all, 2).test);
    // number and string seeds with the same text agree (the seed is hashed as text)
    expect(splitCaseIds(all, 5)).toEqual(splitCaseIds(all, '5'));
  });

  it('moves no existing case when a new case is added, except across one cut', () => {
    // Ranking is per id, so adding a case shifts each cut by at most one position.
    const all = ids(40);
    const before = splitCaseIds(all, 3);
    const after = splitCaseIds([...all, 'CASE_NEW'], 3);
    const part = (s: typeof before, id: string) => (s.train.includes(id) ? 0 : s.validation.includes(id) ? 1 : 2);
    const moved = all.filter((id) => part(before, id) !== part(after, id));
    expect(moved.length).toBeLessThanOrEqual(2);
  });

  it('ignores duplicate ids', () => {
    const s = splitCaseIds(['A', 'B', 'C', 'A'], 0);
    expect([...s.train, ...s.validation, ...s.test].sort()).toEqual(['A', 'B', 'C']);
  });
});
