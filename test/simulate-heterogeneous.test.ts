/**
 * The simulated hospitals really differ the way the README says (site-style.ts applied through
 * `simulate`'s own run-directory code): each default site (styles 2, 0, 3) stores its images
 * with its scanner's voxel spacing and orientation, its own intensity scale and noise level, and
 * its own tumour sizes; and the same options give byte-identical site datasets.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNifti } from '../shared/nifti/index.ts';
import { siteStyle } from '../site-agent/phantom/index.ts';
import { SIMULATE_DEFAULTS } from '../cli/simulate/options.ts';
import { createRunDir, type RunLayout } from '../cli/simulate/run-dir.ts';

const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

const CASES = 6;
const SHAPE: [number, number, number] = [24, 24, 20];

async function layoutIn(name: string): Promise<RunLayout> {
  const root = mkdtempSync(join(tmpdir(), 'patchfed-hetero-'));
  roots.push(root);
  return createRunDir({ ...SIMULATE_DEFAULTS, cases: CASES, shape: SHAPE, runDir: join(root, name) });
}

interface SiteStats {
  spacing: number[];
  /** Sign of the affine's diagonal: which axes are stored reversed. */
  flips: boolean[];
  /** Median FLAIR intensity over head voxels (arbitrary MR units: the scanner's scale). */
  medianFlair: number;
  /** Median |difference| between x-neighbours inside healthy head tissue, relative to the median: the noise level. */
  roughness: number;
  /** Mean tumour (all labels > 0) volume per case in mm³. */
  tumourMm3: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function siteStats(dataDir: string): Promise<SiteStats> {
  const files = readdirSync(join(dataDir, 'imagesTr')).sort();
  let spacing: number[] = [];
  let flips: boolean[] = [];
  const flair: number[] = [];
  const rough: number[] = [];
  let tumourVoxels = 0;
  for (const f of files) {
    const img = await readNifti(join(dataDir, 'imagesTr', f));
    const lab = await readNifti(join(dataDir, 'labelsTr', f));
    spacing = img.geometry.spacing.slice(0, 3);
    flips = [0, 1, 2].map((a) => img.geometry.affine[a]![a]! < 0);
    const [X, Y, Z] = SHAPE;
    const n = X * Y * Z;
    for (let i = 0; i < n; i++) {
      const v = img.data[i]!; // channel 0 (FLAIR), x fastest
      if (v > 0) flair.push(v);
      if (lab.data[i]! > 0) tumourVoxels++;
      const x = i % X;
      if (x + 1 < X && v > 0 && img.data[i + 1]! > 0 && lab.data[i]! === 0 && lab.data[i + 1]! === 0) rough.push(Math.abs(img.data[i + 1]! - v));
    }
  }
  const medianFlair = median(flair);
  return { spacing, flips, medianFlair, roughness: median(rough) / medianFlair, tumourMm3: (tumourVoxels * spacing[0]! * spacing[1]! * spacing[2]!) / files.length };
}

function digestTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const sub of ['imagesTr', 'labelsTr', 'imagesTs']) {
    for (const f of readdirSync(join(dir, sub))) out[`${sub}/${f}`] = createHash('sha256').update(readFileSync(join(dir, sub, f))).digest('hex');
  }
  return out;
}

describe('simulate: non-IID hospitals (default site styles 2, 0, 3)', () => {
  let layout: RunLayout;
  const stats = new Map<string, SiteStats>();
  beforeAll(async () => {
    layout = await layoutIn('a');
    for (const s of layout.sites) stats.set(s.id, await siteStats(join(s.dir, 'data')));
  }, 120_000);

  it('gives each site its own scanner style', () => {
    expect(layout.sites.map((s) => s.siteStyle)).toEqual([2, 0, 3]);
    expect(new Set(layout.sites.map((s) => s.orientation)).size).toBe(3);
  });

  it("stores each site's images at its scanner's spacing and orientation", () => {
    for (const s of layout.sites) {
      const st = stats.get(s.id)!;
      const style = siteStyle(s.siteStyle);
      for (let a = 0; a < 3; a++) expect(st.spacing[a]).toBeCloseTo(style.mri.spacing[a]!, 4);
      expect(st.flips).toEqual(style.flips);
    }
    const spacings = new Set(layout.sites.map((s) => stats.get(s.id)!.spacing.join('x')));
    expect(spacings.size).toBe(3);
  });

  it('has intensity scales and noise levels that differ between sites', () => {
    const [a, b, c] = layout.sites.map((s) => stats.get(s.id)!);
    // Style scales (FLAIR): 2400 (site-a), 1000 (site-b), 150 (site-c): each at least 2× apart.
    expect(a!.medianFlair / b!.medianFlair).toBeGreaterThan(2);
    expect(b!.medianFlair / c!.medianFlair).toBeGreaterThan(2);
    // Style noise: 0.045, 0.03, 0.08 of the white matter: site-c's images are the roughest, site-b's the
    // smoothest (the measure also holds tissue texture and bias, so the ratios are smaller than the noise's).
    expect(c!.roughness).toBeGreaterThan(1.1 * a!.roughness);
    expect(a!.roughness).toBeGreaterThan(1.3 * b!.roughness);
  });

  it("has each site's own tumour sizes (case mix)", () => {
    const [a, b, c] = layout.sites.map((s) => stats.get(s.id)!.tumourMm3);
    // Tumour scale 1.25 (style 2) vs 1 (style 0) vs 0.9 (style 3), in physical volume; style 3's
    // second-tumour probability (0.4 vs 0.15) makes up part of its smaller scale.
    expect(a!).toBeGreaterThan(1.3 * b!);
    expect(a!).toBeGreaterThan(1.1 * c!);
  });

  it('is deterministic: the same options write byte-identical site datasets', async () => {
    const again = await layoutIn('b');
    for (const [i, s] of layout.sites.entries()) expect(digestTree(join(again.sites[i]!.dir, 'data'))).toEqual(digestTree(join(s.dir, 'data')));
  }, 120_000);
});
