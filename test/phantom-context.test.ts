/**
 * Context phantoms (site-agent/phantom/context.ts): the thesis's depth ratio, structures that span
 * several slabs, a labelled class whose local appearance inside a slab is the same as that of a
 * background look-alike (only context beyond the slab tells them apart), and determinism.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONTEXT_ROLE, THESIS_LIKE_SHAPE, THESIS_SLAB, generatePhantomCase, generatePhantomDataset, type PhantomCase, type PhantomTask } from '../site-agent/phantom/index.ts';
import { resolvePhantomScale } from '../cli/commands/phantom.ts';

const SHAPE: [number, number, number] = [...THESIS_LIKE_SHAPE];
const CASES = 16;

/**
 * Site styles 0 and 2 (z spacing 1–1.25 mm, as BraTS's 1 mm). Styles with coarser z spacing see
 * the same anatomy in proportionally fewer slices, as a real scanner would.
 */
function contextCase(task: PhantomTask, i: number, seed = 3): PhantomCase {
  return generatePhantomCase({ task, shape: SHAPE, seed, siteStyle: 2 * (i % 2), caseIndex: i, context: true });
}

/** z indices (stored order) whose slice holds a voxel of `role`. */
function slicesWith(c: PhantomCase, role: number): Set<number> {
  const [X, Y, Z] = c.labelDims;
  const out = new Set<number>();
  const map = c.contextMap!;
  for (let z = 0; z < Z; z++) {
    for (let j = 0; j < X * Y; j++) {
      if (map[z * X * Y + j] === role) {
        out.add(z);
        break;
      }
    }
  }
  return out;
}

/**
 * Slices from which no slab of THESIS_SLAB voxels holding them can reach a landmark: what a
 * patch-wise U-Net sees there is everything it can know.
 */
function landmarkFreeSlices(c: PhantomCase): boolean[] {
  const Z = c.labelDims[2];
  const landmark = slicesWith(c, CONTEXT_ROLE.landmark);
  return Array.from({ length: Z }, (_, z) => {
    for (let d = 1 - THESIS_SLAB; d < THESIS_SLAB; d++) if (landmark.has(z + d)) return false;
    return true;
  });
}

/**
 * Per-channel mean and standard deviation of the positive voxels (head, or body soft tissue):
 * intensities are compared as z-scores, the per-case normalisation a network sees.
 */
function channelScales(c: PhantomCase, channels: number): { mean: number; sd: number }[] {
  const N = c.label.length;
  return Array.from({ length: channels }, (_, ch) => {
    let sum = 0;
    let sq = 0;
    let n = 0;
    for (let v = 0; v < N; v++) {
      const x = c.image[ch * N + v]!;
      if (x > 0) {
        sum += x;
        sq += x * x;
        n++;
      }
    }
    const mean = sum / n;
    return { mean, sd: Math.sqrt(sq / n - mean * mean) };
  });
}

/** Per channel, the z-scored intensities of the voxels `pick` selects in landmark-free slices. */
function poolIntensities(cases: readonly PhantomCase[], channels: number, pick: (c: PhantomCase, v: number) => boolean): number[][] {
  const values: number[][] = Array.from({ length: channels }, () => []);
  for (const c of cases) {
    const [X, Y] = c.labelDims;
    const N = c.label.length;
    const free = landmarkFreeSlices(c);
    const scale = channelScales(c, channels);
    for (let v = 0; v < N; v++) {
      if (!free[Math.floor(v / (X * Y))] || !pick(c, v)) continue;
      for (let ch = 0; ch < channels; ch++) values[ch]!.push((c.image[ch * N + v]! - scale[ch]!.mean) / scale[ch]!.sd);
    }
  }
  return values;
}

const inRole = (role: number) => (c: PhantomCase, v: number) => c.contextMap![v] === role;

function meanSd(a: readonly number[]): { mean: number; sd: number } {
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  return { mean, sd: Math.sqrt(a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length) };
}

/** |difference of means| in pooled standard deviations. */
function standardisedDifference(a: readonly number[], b: readonly number[]): number {
  const x = meanSd(a);
  const y = meanSd(b);
  return Math.abs(x.mean - y.mean) / Math.sqrt((x.sd ** 2 + y.sd ** 2) / 2);
}

const TASKS: { task: PhantomTask; channels: number; contextClass: number }[] = [
  { task: 'brain', channels: 4, contextClass: 1 },
  { task: 'liver', channels: 1, contextClass: 1 },
];

describe.each(TASKS)('context phantom: $task', ({ task, channels, contextClass }) => {
  const cases = Array.from({ length: CASES }, (_, i) => contextCase(task, i));

  it('has the thesis depth ratio and structures spanning several slabs', () => {
    expect(THESIS_SLAB / SHAPE[2]).toBe(0.1); // thesis: 16 of 155 slices
    for (const c of cases) {
      expect(c.facts.context).toBeDefined();
      expect(c.facts.context!.connected).toBe(1);
      expect(c.facts.context!.lookalikes).toBe(1);
      // The labelled structure (landmark plus connected tube) spans ≥ 3 slabs; the tube alone ≥ 1.5.
      const labelled = new Set([...slicesWith(c, CONTEXT_ROLE.landmark), ...slicesWith(c, CONTEXT_ROLE.connected)]);
      expect(labelled.size, `case ${c.facts.labelVoxels.join(',')}`).toBeGreaterThanOrEqual(3 * THESIS_SLAB);
      expect(slicesWith(c, CONTEXT_ROLE.connected).size).toBeGreaterThanOrEqual(1.5 * THESIS_SLAB);
      expect(slicesWith(c, CONTEXT_ROLE.lookalike).size).toBeGreaterThanOrEqual(1.5 * THESIS_SLAB);
    }
    // Most cases have part of the labelled tube out of every slab's reach of its landmark.
    const withFarPart = cases.filter((c) => {
      const free = landmarkFreeSlices(c);
      return [...slicesWith(c, CONTEXT_ROLE.connected)].some((z) => free[z]);
    });
    expect(withFarPart.length).toBeGreaterThanOrEqual(0.75 * CASES);
  });

  it('labels the connected tube as the context class and the look-alike as background', () => {
    for (const c of cases) {
      const map = c.contextMap!;
      let connected = 0;
      let lookalike = 0;
      let mislabelled = 0;
      for (let v = 0; v < map.length; v++) {
        if (map[v] === CONTEXT_ROLE.connected) {
          if (c.label[v] !== contextClass) mislabelled++;
          connected++;
        } else if (map[v] === CONTEXT_ROLE.lookalike) {
          if (c.label[v] !== 0) mislabelled++;
          lookalike++;
        }
      }
      expect(mislabelled).toBe(0);
      expect(connected).toBe(c.facts.context!.connectedVoxels);
      const [X, Y] = c.labelDims;
      const free = landmarkFreeSlices(c);
      let beyond = 0;
      for (let v = 0; v < map.length; v++) if (map[v] === CONTEXT_ROLE.connected && free[Math.floor(v / (X * Y))]) beyond++;
      expect(beyond).toBe(c.facts.context!.connectedBeyondSlab);
      expect(lookalike).toBe(c.facts.context!.lookalikeVoxels);
      expect(lookalike).toBeGreaterThan(0);
    }
  });

  it('makes the context class locally ambiguous: the same intensities and size as its look-alike away from the landmark', () => {
    const connected = poolIntensities(cases, channels, inRole(CONTEXT_ROLE.connected));
    const lookalike = poolIntensities(cases, channels, inRole(CONTEXT_ROLE.lookalike));
    // Enough of both lie out of a slab's reach of the landmark to matter.
    expect(connected[0]!.length).toBeGreaterThan(1000);
    expect(lookalike[0]!.length).toBeGreaterThan(1000);
    for (let ch = 0; ch < channels; ch++) {
      expect(standardisedDifference(connected[ch]!, lookalike[ch]!), `channel ${ch}`).toBeLessThan(0.35);
      const a = meanSd(connected[ch]!);
      const b = meanSd(lookalike[ch]!);
      expect(Math.abs(a.sd - b.sd) / Math.max(a.sd, b.sd), `channel ${ch} spread`).toBeLessThan(0.25);
    }
    // Cross-section: voxels per slice of each tube in the landmark-free slices.
    const perSlice = (role: number) => {
      let voxels = 0;
      let slices = 0;
      for (const c of cases) {
        const free = landmarkFreeSlices(c);
        const [X, Y] = c.labelDims;
        for (const z of slicesWith(c, role)) {
          if (!free[z]) continue;
          slices++;
          for (let j = 0; j < X * Y; j++) if (c.contextMap![z * X * Y + j] === role) voxels++;
        }
      }
      return voxels / slices;
    };
    const a = perSlice(CONTEXT_ROLE.connected);
    const b = perSlice(CONTEXT_ROLE.lookalike);
    expect(Math.abs(a - b) / Math.max(a, b)).toBeLessThan(0.2);
  });

  it('has power: the same check separates the tubes from the tissue right around them', () => {
    // Background within two voxels in-plane of the labelled tube, in the same landmark-free slices.
    const near = new Map<PhantomCase, Uint8Array>();
    for (const c of cases) {
      const [X, Y] = c.labelDims;
      const mask = new Uint8Array(c.label.length);
      c.contextMap!.forEach((role, v) => {
        if (role !== CONTEXT_ROLE.connected) return;
        const x = v % X;
        const y = Math.floor(v / X) % Y;
        for (let dy = -2; dy <= 2; dy++) {
          for (let dx = -2; dx <= 2; dx++) {
            if (x + dx >= 0 && x + dx < X && y + dy >= 0 && y + dy < Y) mask[v + dy * X + dx] = 1;
          }
        }
      });
      near.set(c, mask);
    }
    const aroundTube = (c: PhantomCase, v: number) => near.get(c)![v] === 1 && c.contextMap![v] === CONTEXT_ROLE.none && c.label[v] === 0;
    const ring = poolIntensities(cases, channels, aroundTube);
    const connected = poolIntensities(cases, channels, inRole(CONTEXT_ROLE.connected));
    const separations = ring.map((r, ch) => standardisedDifference(connected[ch]!, r));
    expect(Math.max(...separations)).toBeGreaterThan(1);
  });

  it('is deterministic: same arguments, identical arrays; another seed differs', () => {
    const a = contextCase(task, 5);
    const b = contextCase(task, 5);
    expect(Buffer.from(a.image.buffer).equals(Buffer.from(b.image.buffer))).toBe(true);
    expect(Buffer.from(a.label.buffer).equals(Buffer.from(b.label.buffer))).toBe(true);
    expect(Buffer.from(a.contextMap!.buffer).equals(Buffer.from(b.contextMap!.buffer))).toBe(true);
    expect(a.geometry).toEqual(b.geometry);
    const c = contextCase(task, 5, 4);
    expect(Buffer.from(a.label.buffer).equals(Buffer.from(c.label.buffer))).toBe(false);
  });
});

describe('context phantom grid and files', () => {
  const roots: string[] = [];
  afterAll(async () => {
    for (const d of roots) await rm(d, { recursive: true, force: true });
  });

  it('stretches in-plane voxels so the anatomy keeps its proportions, and says so in the header', () => {
    const c = generatePhantomCase({ task: 'brain', shape: SHAPE, seed: 1, siteStyle: 0, caseIndex: 0, context: true });
    expect(c.geometry.spacing).toEqual([5, 5, 1]); // style 0: 1 mm isotropic; 160 / 32 = 5
    const standard = generatePhantomCase({ task: 'brain', shape: SHAPE, seed: 1, siteStyle: 0, caseIndex: 0 });
    expect(standard.geometry.spacing).toEqual([1, 1, 1]);
    expect(standard.contextMap).toBeUndefined();
    expect(standard.facts.context).toBeUndefined();
  });

  it('--scale thesis-like means a 32×32×160 context phantom; explicit --shape and --no-context win', () => {
    expect(resolvePhantomScale('thesis-like', undefined, undefined)).toEqual({ shape: [32, 32, 160], context: true });
    expect(resolvePhantomScale('thesis-like', [16, 16, 64], undefined)).toEqual({ shape: [16, 16, 64], context: true });
    expect(resolvePhantomScale('thesis-like', undefined, false)).toEqual({ shape: [32, 32, 160], context: false });
    expect(resolvePhantomScale('standard', undefined, undefined)).toEqual({ shape: [64, 64, 48], context: false });
    expect(resolvePhantomScale('standard', undefined, true)).toEqual({ shape: [64, 64, 48], context: true });
  });

  it('writes byte-identical datasets for the same options and records the context flag', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'patchfed-context-'));
    roots.push(root);
    const hashes = async (dir: string) => {
      const out: Record<string, string> = {};
      for (const sub of ['imagesTr', 'labelsTr']) {
        for (const f of await readdir(path.join(dir, sub))) out[`${sub}/${f}`] = createHash('sha256').update(await readFile(path.join(dir, sub, f))).digest('hex');
      }
      out['dataset.json'] = createHash('sha256').update(await readFile(path.join(dir, 'dataset.json'))).digest('hex');
      return out;
    };
    const opts = { task: 'liver' as const, cases: 2, testCases: 0, shape: [16, 16, 64] as [number, number, number], seed: 2, siteStyle: 1, context: true };
    const a = await generatePhantomDataset({ ...opts, out: path.join(root, 'a') });
    const b = await generatePhantomDataset({ ...opts, out: path.join(root, 'b') });
    expect(await hashes(b.dir)).toEqual(await hashes(a.dir));
    expect(a.stretch).toBe(4);
    const json = JSON.parse(await readFile(a.datasetJson, 'utf8'));
    expect(json.phantom.context).toBe(true);
    expect(json.description).toContain('context phantom');
    const plain = await generatePhantomDataset({ ...opts, context: false, out: path.join(root, 'c') });
    expect(JSON.parse(await readFile(plain.datasetJson, 'utf8')).phantom.context).toBeUndefined();
    expect(await hashes(plain.dir)).not.toEqual(await hashes(a.dir));
  });
});
