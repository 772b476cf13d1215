import { afterEach, describe, expect, it } from 'vitest';
import { ByteLruCache } from '../site-agent/data/lru-cache.ts';
import { openMsdDataset, type MsdDataset } from '../site-agent/data/msd-dataset.ts';
import { goodCase, tempDir, writeDataset, type FixtureDataset } from './dataset-fixtures.ts';

let ds: FixtureDataset | undefined;
afterEach(async () => {
  await ds?.cleanup();
  ds = undefined;
});

// 2 channels x 8^3 float32 + 8^3 uint8 labels = 4096 + 512 bytes per preprocessed case
const SHAPE: [number, number, number] = [8, 8, 8];
const CASE_BYTES = 2 * 512 * 4 + 512;

async function dataset(nCases: number, cacheBytes: number): Promise<MsdDataset> {
  ds = await tempDir();
  await writeDataset(ds.dir, { cases: Array.from({ length: nCases }, (_, i) => goodCase(`case_${i}`, SHAPE, i + 1)) });
  return openMsdDataset(ds.dir, { cacheMB: cacheBytes / (1024 * 1024) });
}

describe('lazy loading with a bounded cache', () => {
  it('never holds more than cacheMB of preprocessed cases, and re-reads evicted ones', async () => {
    const d = await dataset(6, 2.5 * CASE_BYTES); // the dataset is 6 cases, the cache fits 2
    expect(d.cacheStats().decodes).toBe(0); // opening decodes nothing
    const ids = d.cases.map((c) => c.id);
    let maxSeen = 0;
    for (let pass = 0; pass < 2; pass++) {
      for (const id of ids) {
        const c = await d.load(id);
        expect(c.image.byteLength + c.label.byteLength).toBe(CASE_BYTES);
        const s = d.cacheStats();
        expect(s.bytes).toBeLessThanOrEqual(s.maxBytes);
        expect(s.entries).toBeLessThanOrEqual(2);
        maxSeen = Math.max(maxSeen, s.bytes);
      }
    }
    expect(maxSeen).toBe(2 * CASE_BYTES);
    const s = d.cacheStats();
    // in order through 6 cases with room for 2, every load of the second pass misses
    expect(s.decodes).toBe(12);
    expect(s.hits).toBe(0);
    expect(s.evictions).toBe(10);
  });

  it('keeps recently used cases: a hit refreshes, the least recently used goes', async () => {
    const d = await dataset(3, 2.5 * CASE_BYTES);
    const [a, b, c] = d.cases.map((x) => x.id) as [string, string, string];
    const first = await d.load(a);
    await d.load(b);
    expect(await d.load(a)).toBe(first); // hit: same object, no decode
    expect(d.cacheStats()).toMatchObject({ decodes: 2, hits: 1 });
    await d.load(c); // evicts b (least recently used), not a
    await d.load(a);
    expect(d.cacheStats()).toMatchObject({ decodes: 3, hits: 2 });
    const again = await d.load(b);
    expect(d.cacheStats().decodes).toBe(4); // b was re-read from disk
    expect(again.image).toEqual((await d.load(b)).image);
  });

  it('decodes a case once when it is requested concurrently', async () => {
    const d = await dataset(2, 10 * CASE_BYTES);
    const id = d.cases[0]!.id;
    const [x, y, z] = await Promise.all([d.load(id), d.load(id), d.load(id)]);
    expect(x).toBe(y);
    expect(y).toBe(z);
    expect(d.cacheStats().decodes).toBe(1);
  });

  it('with a cache smaller than one case, loads still work and nothing is kept', async () => {
    const d = await dataset(2, CASE_BYTES - 1);
    await d.load(d.cases[0]!.id);
    await d.load(d.cases[0]!.id);
    expect(d.cacheStats()).toMatchObject({ bytes: 0, entries: 0, decodes: 2 });
  });

  it('refuses a negative or non-finite cacheMB', async () => {
    await expect(dataset(1, -1)).rejects.toThrow(/cacheMB must be a finite number >= 0/);
  });
});

describe('ByteLruCache', () => {
  it('evicts by bytes in least-recently-used order', () => {
    const cache = new ByteLruCache<Uint8Array>(10, (v) => v.byteLength);
    cache.set('a', new Uint8Array(4));
    cache.set('b', new Uint8Array(4));
    cache.get('a');
    cache.set('c', new Uint8Array(4));
    expect(cache.keys()).toEqual(['a', 'c']);
    expect(cache.bytes).toBe(8);
    expect(cache.set('huge', new Uint8Array(11))).toBe(false);
    expect(cache.keys()).toEqual(['a', 'c']);
    cache.set('a', new Uint8Array(6)); // replacing updates the byte count
    expect(cache.bytes).toBe(10);
    expect(cache.evictions).toBe(1);
  });
});
