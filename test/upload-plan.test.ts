import { describe, expect, it } from 'vitest';
import { uploadPlan } from '../coordinator/server/upload-plan.ts';
import { MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from '../shared/protocol/limits.ts';

const MiB = 1024 * 1024;

describe('upload plan: chunk size and window from the coordinator buffer', () => {
  it.each([1, 2, 3, 8, 16, 32, 64, 256])('keeps %i site(s) within a 64 MiB buffer (or one minimum chunk each)', (sites) => {
    const plan = uploadPlan(sites, 64 * MiB);
    expect(plan.chunkBytes).toBeGreaterThanOrEqual(MIN_CHUNK_BYTES);
    expect(plan.chunkBytes).toBeLessThanOrEqual(MAX_CHUNK_BYTES);
    expect(plan.window).toBeGreaterThanOrEqual(1);
    expect(sites * plan.chunkBytes * plan.window).toBeLessThanOrEqual(Math.max(64 * MiB, sites * MIN_CHUNK_BYTES));
  });

  it('gives few sites big chunks and deep windows, many sites small ones', () => {
    expect(uploadPlan(1, 64 * MiB)).toEqual({ chunkBytes: 4 * MiB, window: 8 });
    expect(uploadPlan(3, 64 * MiB)).toEqual({ chunkBytes: 4 * MiB, window: 5 });
    expect(uploadPlan(16, 64 * MiB)).toEqual({ chunkBytes: 2 * MiB, window: 2 });
    expect(uploadPlan(32, 64 * MiB)).toEqual({ chunkBytes: 1 * MiB, window: 2 });
  });
});
