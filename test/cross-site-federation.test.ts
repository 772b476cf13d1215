/**
 * Cross-site validation in a real federation: an in-process coordinator and two real site daemons
 * (the `patchfed site` code, in-process) train the tiny U-Net for two rounds on liver phantoms;
 * after the last round each site scores the final global model on its own test split (site-a
 * also its last local model) and reports signed per-class means. The table is filled for every
 * site, served by the dashboard API, written beside the final checkpoint, and its numbers are
 * what `patchfed predict` + `patchfed evaluate` give on the same site's test cases.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import { checkpointSigningPayload } from '../coordinator/store/checkpoint-meta.ts';
import { crossSiteTableSchema, CROSS_SITE_FILE, type CrossSiteTable } from '../shared/protocol/cross-site-table.ts';
import { runSiteDaemon } from '../site-agent/daemon/daemon.ts';
import { openMsdDataset } from '../site-agent/data/index.ts';
import { evaluateFolders } from '../site-agent/evaluate/evaluate-folders.ts';
import { buildModelCard, modelCardMarkdown } from '../site-agent/export/model-card.ts';
import { loadModel } from '../site-agent/inference/load-model.ts';
import { planJobs, predictJobs } from '../site-agent/inference/predict-inputs.ts';
import { disposePredictionModel } from '../site-agent/inference/prediction-model.ts';
import { SiteContext } from '../site-agent/inference/site-context.ts';
import { generatePhantomDataset } from '../site-agent/phantom/index.ts';
import { makeFederation, startSite, testLog, tinyLiverExperiment, waitForEvent, type Federation, type TestSite } from './federation-fixtures.ts';

const SITES = [
  { id: 'site-a', budgetMB: 64, style: 0, evaluateLocalModel: true },
  { id: 'site-b', budgetMB: 80, style: 1, evaluateLocalModel: false },
] as const;

let fed: Federation;
let coordinator: RunningCoordinator;
const stopDaemons = new AbortController();
const daemons: Promise<unknown>[] = [];
const configs = new Map<string, string>();
let late: TestSite | undefined;

describe('cross-site validation at the end of an experiment', () => {
  beforeAll(async () => {
    // site-z is enrolled but connects only after the experiment (it sends hand-made reports).
    fed = makeFederation({ sites: [...SITES.map((s) => s.id), 'site-z'], experiment: tinyLiverExperiment({ id: 'xval', rounds: 2 }) });
    coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, log: testLog() });
    for (const s of SITES) {
      // 6 cases: the 60/20/20 split leaves each site at least one test case.
      await generatePhantomDataset({ task: 'liver', cases: 6, testCases: 0, shape: [24, 24, 16], seed: 11 + s.style, siteStyle: s.style, out: join(fed.dir, `${s.id}-data`) });
      const configPath = join(fed.dir, `${s.id}.json`);
      writeFileSync(
        configPath,
        JSON.stringify({
          siteId: s.id,
          dataset: `${s.id}-data`,
          memoryBudgetMB: s.budgetMB,
          backend: 'auto',
          cacheMB: 32,
          workDir: `${s.id}-work`,
          logFile: `${s.id}.log`,
          training: { overlap: 0 },
          federation: { coordinatorUrl: coordinator.url, secretKey: `${s.id}.key`, publicKey: `${s.id}.pub`, coordinatorPublicKey: 'coordinator.pub', evaluateLocalModel: s.evaluateLocalModel },
        }),
      );
      configs.set(s.id, configPath);
      daemons.push(runSiteDaemon(configPath, { stopSignal: stopDaemons.signal }));
    }
  }, 120_000);

  afterAll(async () => {
    await late?.client.stop();
    stopDaemons.abort();
    await Promise.allSettled(daemons);
    await coordinator?.stop();
    fed?.cleanup();
  });

  it('fills the sites × metrics table for every site, serves it on the dashboard API and writes it beside the final checkpoint', { timeout: 240_000 }, async () => {
    const reports = [waitForEvent(coordinator.events, 'cross-site-validation', (p: { siteId: string; model: string }) => p.siteId === 'site-a' && p.model === 'global', 200_000),
      waitForEvent(coordinator.events, 'cross-site-validation', (p: { siteId: string; model: string }) => p.siteId === 'site-a' && p.model === 'local', 200_000),
      waitForEvent(coordinator.events, 'cross-site-validation', (p: { siteId: string; model: string }) => p.siteId === 'site-b' && p.model === 'global', 200_000)];
    const end = await coordinator.finished;
    expect(end.kind).toBe('complete');
    await Promise.all(reports);

    const table = coordinator.crossSite();
    if (!table) throw new Error('no cross-site table after the experiment completed');
    expect(table.round).toBe(2);
    expect(table.labels).toEqual(['liver', 'cancer']);
    expect(table.rows.map((r) => `${r.siteId}/${r.model}`)).toEqual(['site-a/global', 'site-a/local', 'site-b/global']);
    expect(table.rows.find((r) => r.model === 'local')?.localRound).toBe(2);
    for (const r of table.rows) {
      const ds = await openMsdDataset(join(fed.dir, `${r.siteId}-data`), { cacheMB: 0, seed: 1 });
      expect(r.cases, r.siteId).toBe(ds.split(1).test.length);
      const liver = r.classes.liver;
      if (!liver) throw new Error('no liver column');
      expect(liver.dice.n).toBe(r.cases); // every test phantom has liver
      expect(liver.dice.mean).not.toBeNull();
      expect(liver.dice.mean ?? -1).toBeGreaterThan(0);
      expect(liver.dice.mean ?? 2).toBeLessThanOrEqual(1);
      expect(liver.nsd.mean ?? -1).toBeGreaterThanOrEqual(0);
    }
    // The stored numbers are the ones that went into the DB under the final round, nothing else.
    const versions = coordinator.checkpoints();
    const final = versions[versions.length - 1];
    expect(table.checkpointVersion).toBe(final?.version);

    // Dashboard API: the snapshot carries the same table.
    const res = await fetch(`${coordinator.url}/api/snapshot`, { headers: { authorization: `Bearer ${fed.config.dashboardToken}` } });
    expect(res.status).toBe(200);
    const snapshot = (await res.json()) as { crossSite?: CrossSiteTable | null };
    // The payload rounds fractions to a few significant digits (dashboard/payload.ts).
    const served = snapshot.crossSite;
    expect(served?.rows.map((r) => [r.siteId, r.model, r.cases])).toEqual(table.rows.map((r) => [r.siteId, r.model, r.cases]));
    served?.rows.forEach((r, i) => {
      for (const l of table.labels) for (const m of ['dice', 'hd95', 'nsd'] as const) expect(r.classes[l]?.[m].mean ?? null, `${r.siteId} ${l} ${m}`).toBeCloseTo(table.rows[i]?.classes[l]?.[m].mean ?? NaN, 3);
    });

    // Beside the final checkpoint, for export's model card.
    const written = crossSiteTableSchema.parse(JSON.parse(readFileSync(join(fed.dir, 'state', 'checkpoints', `v${String(table.checkpointVersion).padStart(6, '0')}`, CROSS_SITE_FILE), 'utf8')));
    expect(written).toEqual(table);
  });

  it("reports what patchfed predict + evaluate give for the final checkpoint on that site's test cases", { timeout: 120_000 }, async () => {
    const table = coordinator.crossSite();
    const row = table?.rows.find((r) => r.siteId === 'site-b' && r.model === 'global');
    if (!table || !row) throw new Error('site-b has not reported');
    // The site's test cases as a user would have them: images in one folder, labels in another.
    const data = join(fed.dir, 'site-b-data');
    const ds = await openMsdDataset(data, { cacheMB: 0, seed: 1 });
    const images = join(fed.dir, 'site-b-test', 'imagesTs');
    const labels = join(fed.dir, 'site-b-test', 'labelsTs');
    mkdirSync(images, { recursive: true });
    mkdirSync(labels, { recursive: true });
    for (const id of ds.split(1).test) {
      copyFileSync(join(data, 'imagesTr', `${id}.nii.gz`), join(images, `${id}.nii.gz`));
      copyFileSync(join(data, 'labelsTr', `${id}.nii.gz`), join(labels, `${id}.nii.gz`));
    }
    const site = new SiteContext(configs.get('site-b') ?? '');
    const { model, checkpoint } = await loadModel({ model: join(fed.dir, 'state'), coordinatorKey: join(fed.dir, 'coordinator.pub'), site, signingPayload: checkpointSigningPayload });
    try {
      expect(checkpoint?.verification.verified).toBe(true);
      expect(checkpoint?.meta.version).toBe(table.checkpointVersion);
      const preds = join(fed.dir, 'site-b-test', 'pred');
      const result = await predictJobs(model, planJobs(images, preds), { quiet: true });
      expect(result.failed).toEqual([]);
      const evaluation = await evaluateFolders({ predDir: preds, labelsDir: labels, datasetDir: data });
      const liver = evaluation.perClass.find((c) => c.name === 'liver');
      expect(liver?.dice.n).toBe(row.cases);
      expect(row.classes.liver?.dice.mean).toBeCloseTo(liver?.dice.mean ?? NaN, 9);
      expect(row.classes.liver?.nsd.mean).toBeCloseTo(liver?.nsd.mean ?? NaN, 9);

      // export's model card carries the table and the participating sites with their sample counts.
      const card = buildModelCard(model, checkpoint, 'onnx', [], null);
      expect(card.crossSiteValidation).toEqual(table);
      expect(card.sites).toEqual(SITES.map((s) => ({ id: s.id, rounds: 2, samples: expect.any(Number) as number })));
      const markdown = modelCardMarkdown(card);
      expect(markdown).toContain('## Cross-site validation');
      expect(markdown).toContain(`| site-b | global v${table.checkpointVersion} | ${row.cases} |`);
    } finally {
      disposePredictionModel(model);
    }
  });

  it('refuses a forged, a stale and a mislabelled report, and keeps the first of repeated ones', { timeout: 60_000 }, async () => {
    let forge = false;
    late = startSite(fed, coordinator.url, 'site-z', {
      // A valid-looking signature that is not the site's: what an on-path attacker could send.
      tamper: (type, args) => (type === 'final-evaluation' && forge ? [{ ...(args[0] as object), signature: Buffer.alloc(64, 7).toString('base64') }, ...args.slice(1)] : args),
    });
    const z = late;
    const done = await waitForEvent<{ round: number; checkpointVersion: number; checkpointSha256: string }>(z.client, 'complete', () => true, 30_000);
    const scores = (cases: number) => [
      { name: 'liver', dice: { mean: cases / 10, n: cases, infinite: 0 }, hd95: { mean: 2, n: cases, infinite: 0 }, nsd: { mean: 0.5, n: cases, infinite: 0 } },
      { name: 'cancer', dice: { mean: 0, n: cases, infinite: 0 }, hd95: { mean: null, n: cases, infinite: cases }, nsd: { mean: 0, n: cases, infinite: 0 } },
    ];
    const body = (cases: number, over: object = {}) => ({ experimentId: 'xval', round: done.round, checkpointVersion: done.checkpointVersion, checkpointSha256: done.checkpointSha256, model: 'global' as const, cases, nsdToleranceMm: 1, classes: scores(cases), ...over });
    const zRows = () => coordinator.crossSite()?.rows.filter((r) => r.siteId === 'site-z') ?? [];
    // Events on one connection are handled in order: once the valid report is recorded, the three before it were refused.
    z.client.reportFinalEvaluation(body(9, { checkpointVersion: done.checkpointVersion - 1 }));
    z.client.reportFinalEvaluation(body(8, { classes: scores(8).reverse() }));
    forge = true;
    z.client.reportFinalEvaluation(body(7));
    forge = false;
    const recorded = waitForEvent(coordinator.events, 'cross-site-validation', (p: { siteId: string; model: string }) => p.siteId === 'site-z' && p.model === 'global', 30_000);
    z.client.reportFinalEvaluation(body(1));
    await recorded;
    expect(zRows().map((r) => [r.model, r.cases])).toEqual([['global', 1]]);
    expect(zRows()[0]?.classes.cancer?.hd95).toEqual({ mean: null, n: 1, infinite: 1 });
    // A repeat (sites re-send after reconnects) changes nothing; a 'local' report after it shows it was handled.
    const local = waitForEvent(coordinator.events, 'cross-site-validation', (p: { siteId: string; model: string }) => p.siteId === 'site-z' && p.model === 'local', 30_000);
    z.client.reportFinalEvaluation(body(5));
    z.client.reportFinalEvaluation(body(3, { model: 'local', localRound: 2 }));
    await local;
    expect(zRows().map((r) => [r.model, r.cases])).toEqual([['global', 1], ['local', 3]]);
  });
});
