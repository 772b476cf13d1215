/**
 * Unequal dataset sizes and partially annotated sites in `patchfed simulate`'s run directory:
 * `--cases 5,3,4` gives each hospital its own number of labelled cases (FedAvg's weight is its
 * training split), `--site-labels all,whole-tumour` writes one site's ground truth with the
 * tumour classes merged and its site.json says so; bad lists fail with a one-line usage error.
 * Cost: three 16×16×12 brain phantom sets (~1-2 s) and two CLI parses (no training).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readNifti } from '../shared/nifti/index.ts';
import { openMsdDataset } from '../site-agent/data/index.ts';
import { loadSiteConfig } from '../site-agent/site-config.ts';
import { SIMULATE_DEFAULTS, casesForSite, parseCasesOption } from '../cli/simulate/options.ts';
import { createRunDir } from '../cli/simulate/run-dir.ts';

const root = mkdtempSync(join(tmpdir(), 'patchfed-unequal-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('simulate --cases list', () => {
  it('parses a list, cycles it over the sites, and keeps a single number as before', () => {
    expect(parseCasesOption('16,8,4')).toEqual([16, 8, 4]);
    expect(parseCasesOption(' 10 ')).toEqual([10]);
    expect([0, 1, 2, 3, 4].map((i) => casesForSite(i, [16, 8, 4]))).toEqual([16, 8, 4, 16, 8]);
    expect(casesForSite(7, 10)).toBe(10);
  });

  it('rejects bad lists naming the bad entry', () => {
    expect(parseCasesOption('16,2,4')).toMatch(/--cases must be whole numbers from 3 to 1000 .*got '2' in '16,2,4'/);
    expect(parseCasesOption('16,x')).toMatch(/got 'x'/);
    expect(parseCasesOption('8,,4')).toMatch(/got ''/);
    expect(parseCasesOption('4.5')).toMatch(/got '4.5'/);
  });

  it('fails on the command line with exit 2 and one line', () => {
    const cases = spawnSync(process.execPath, ['cli/patchfed.js', 'simulate', '--cases', '16,x', '--run-dir', join(root, 'never')], { encoding: 'utf8' });
    expect(cases.status).toBe(2);
    expect(cases.stderr).toContain("--cases must be whole numbers from 3 to 1000 separated by commas, one per site and cycled (e.g. 16,8,4); got 'x'");
    const labels = spawnSync(process.execPath, ['cli/patchfed.js', 'simulate', '--site-labels', 'all,1+9', '--run-dir', join(root, 'never')], { encoding: 'utf8' });
    expect(labels.status).toBe(2);
    expect(labels.stderr).toContain("--site-labels '1+9': unknown label id 9");
  });
});

describe('run directory with unequal, partially annotated sites', () => {
  it('gives each site its own case count and annotation', async () => {
    const layout = await createRunDir({
      ...SIMULATE_DEFAULTS,
      cases: [5, 3, 4],
      siteLabels: ['all', 'whole-tumour', [1, 3]],
      shape: [16, 16, 12],
      port: 1,
      runDir: join(root, 'run'),
    });
    const sizes: number[] = [];
    const trainSplits: number[] = [];
    for (const site of layout.sites) {
      const json = JSON.parse(readFileSync(join(site.dir, 'data', 'dataset.json'), 'utf8')) as { numTraining: number };
      sizes.push(json.numTraining);
      const cfg = loadSiteConfig(site.configPath);
      const ds = await openMsdDataset(cfg.dataset, { seed: cfg.seed, annotatedLabels: cfg.annotatedLabels });
      trainSplits.push(ds.split(cfg.seed).train.length);
    }
    expect(sizes).toEqual([5, 3, 4]);
    // FedAvg weights by the training split: the sites' weights differ.
    expect(new Set(trainSplits).size).toBeGreaterThan(1);

    const [a, b, c] = layout.sites.map((s) => loadSiteConfig(s.configPath));
    expect(a?.annotatedLabels).toBeUndefined();
    expect(b?.annotatedLabels).toEqual([{ name: 'whole tumour', labels: [1, 2, 3] }]);
    expect(c?.annotatedLabels).toEqual([1, 3]);

    // Site b's ground truth holds background and the whole tumour only; site c never draws class 2.
    const valuesOf = async (dir: string) => {
      const json = JSON.parse(readFileSync(join(dir, 'data', 'dataset.json'), 'utf8')) as { training: { label: string }[] };
      const seen = new Set<number>();
      for (const t of json.training) for (const v of (await readNifti(join(dir, 'data', t.label))).data) seen.add(v);
      return [...seen].sort();
    };
    const [siteA, siteB, siteC] = layout.sites;
    expect(await valuesOf(siteA?.dir ?? '')).toEqual([0, 1, 2, 3]);
    expect(await valuesOf(siteB?.dir ?? '')).toEqual([0, 1]);
    expect(await valuesOf(siteC?.dir ?? '')).toEqual([0, 1, 3]);
  });
});
