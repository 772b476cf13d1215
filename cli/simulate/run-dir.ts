/**
 * The run directory of a simulation: one phantom hospital per site (its own scanner style, case
 * mix and memory budget), keys made by the same crypto module as `patchfed keygen`, and the
 * coordinator and site configs a real deployment would use. Layout (paths inside configs are
 * relative to the config file, so the folder can move):
 *
 *   coordinator.json, keys/coordinator.{key,pub}, sites/<id>.pub (enrolment), state/, logs/
 *   <id>/site.json, <id>/keys/<id>.{key,pub}, <id>/coordinator.pub (pinned), <id>/data/, <id>/work/
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { CoordinatorConfigSchema, type CoordinatorConfig } from '../../shared/config/coordinator.ts';
import { generateDashboardToken } from '../../shared/config/dashboard-token.ts';
import { SiteConfigSchema, type SiteConfig } from '../../shared/config/site.ts';
import { generateKeyPairs, writeKeyFiles } from '../../shared/crypto/keys.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { BRAIN_LABELS, BRAIN_MODALITIES, LIVER_LABELS, LIVER_MODALITIES, SITE_ARCHETYPES, generatePhantomDataset } from '../../site-agent/phantom/index.ts';
import { annotatedLabelsForSite, casesForSite, simulatedSiteIds, simulationSecureAggregation, simulationStrategy, type SimulateOptions } from './options.ts';

export interface SimulatedSite {
  id: string;
  dir: string;
  configPath: string;
  config: SiteConfig;
  memoryBudgetMB: number;
  siteStyle: number;
  orientation: string;
}

export interface RunLayout {
  dir: string;
  coordinatorConfigPath: string;
  coordinatorConfig: CoordinatorConfig;
  stateDir: string;
  logDir: string;
  url: string;
  port: number;
  token: string;
  sites: SimulatedSite[];
}

/** A free TCP port on loopback (kept for the whole run, so a restarted coordinator reuses it). */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** `mode` 0600 for a file holding a secret (the coordinator config carries the dashboard token). */
function writeJson(path: string, value: unknown, mode = 0o644): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`, { mode });
  chmodSync(path, mode); // writeFileSync's mode only applies to new files and is masked by the umask
}

function ensureEmptyRunDir(dir: string): void {
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new PatchFedError('E_RUN_DIR', `run directory ${dir} is not empty; choose a new --run-dir (a simulation never overwrites an earlier run)`, { subject: dir });
  }
  mkdirSync(dir, { recursive: true });
}

/**
 * Site style of site `i`: the listed styles in turn; once the list is used up, jittered variants
 * of the same archetypes (style k + SITE_ARCHETYPES is archetype k with every knob perturbed), so
 * no two sites share a scanner.
 */
export function siteStyleFor(i: number, styles: readonly number[]): number {
  if (styles.length === 0) return i;
  return styles[i % styles.length]! + SITE_ARCHETYPES * Math.floor(i / styles.length);
}

export async function createRunDir(opts: SimulateOptions, log: (line: string) => void = () => {}): Promise<RunLayout> {
  const dir = resolve(opts.runDir);
  ensureEmptyRunDir(dir);
  const port = opts.port === 0 ? await freeLoopbackPort() : opts.port;
  const url = `http://127.0.0.1:${port}`;
  const token = generateDashboardToken();
  const ids = simulatedSiteIds(opts.sites);

  for (const sub of ['keys', 'sites', 'logs']) mkdirSync(join(dir, sub), { recursive: true });
  const coordinatorKeys = generateKeyPairs();
  writeKeyFiles(join(dir, 'keys', 'coordinator'), coordinatorKeys);

  const sites: SimulatedSite[] = [];
  for (const [i, id] of ids.entries()) sites.push(await createSimulatedSite(opts, dir, id, i, url, log));
  const raw = coordinatorConfigFor(opts, port, token, ids);
  const coordinatorConfigPath = join(dir, 'coordinator.json');
  writeJson(coordinatorConfigPath, raw, 0o600);
  return {
    dir,
    coordinatorConfigPath,
    coordinatorConfig: CoordinatorConfigSchema.parse(raw),
    stateDir: join(dir, 'state'),
    logDir: join(dir, 'logs'),
    url,
    port,
    token,
    sites,
  };
}

/** One hospital: its keys (enrolled both ways), its phantom dataset and its site config. */
async function createSimulatedSite(opts: SimulateOptions, dir: string, id: string, i: number, url: string, log: (line: string) => void): Promise<SimulatedSite> {
  const siteDir = join(dir, id);
  mkdirSync(join(siteDir, 'keys'), { recursive: true });
  writeKeyFiles(join(siteDir, 'keys', id), generateKeyPairs());
  // Enrolment: the site hands over its .pub; the coordinator pins it. And the reverse.
  copyFileSync(join(siteDir, 'keys', `${id}.pub`), join(dir, 'sites', `${id}.pub`));
  copyFileSync(join(dir, 'keys', 'coordinator.pub'), join(siteDir, 'coordinator.pub'));

  const style = siteStyleFor(i, opts.siteStyles);
  const cases = casesForSite(i, opts.cases);
  const annotatedLabels = annotatedLabelsForSite(i, opts.task, opts.siteLabels);
  const phantom = await generatePhantomDataset({
    task: opts.task,
    cases,
    testCases: 1,
    shape: opts.shape,
    seed: opts.seed * 1000 + i,
    siteStyle: style,
    out: join(siteDir, 'data'),
    ...(annotatedLabels ? { annotatedLabels } : {}),
  });
  const memoryBudgetMB = opts.budgetsMB[i % opts.budgetsMB.length]!;
  const raw = {
    siteId: id,
    dataset: 'data',
    ...(annotatedLabels ? { annotatedLabels } : {}),
    memoryBudgetMB,
    backend: opts.backend,
    seed: opts.seed,
    cacheMB: 64,
    workDir: 'work',
    model: { mode: opts.model, preset: opts.preset, norm: 'instance', cascadeFactor: 0.5 },
    // Validation by a Gaussian sliding window (overlap 0.5, windows flush with the volume end):
    // the non-overlapping grid (overlap 0) zero-pads the last patch per axis, and an
    // instance-normalised net sees mostly padding there — on 32×32×24 volumes with 20³/24³
    // patches the same weights scored mean Dice 0.33 by grid vs 0.98 by sliding window.
    training: { learningRate: opts.learningRate, foregroundRate: opts.foregroundRate, overlap: 0.5, blend: 'gaussian' },
    federation: {
      coordinatorUrl: url,
      secretKey: `keys/${id}.key`,
      publicKey: `keys/${id}.pub`,
      coordinatorPublicKey: 'coordinator.pub',
      // Cross-site validation also scores each site's own last local model: what federation bought it.
      evaluateLocalModel: true,
    },
  };
  const configPath = join(siteDir, 'site.json');
  writeJson(configPath, raw);
  const site: SimulatedSite = { id, dir: siteDir, configPath, config: SiteConfigSchema.parse(raw), memoryBudgetMB, siteStyle: style, orientation: phantom.style.orientation };
  log(`  ${id}: phantom ${opts.task} ${cases}+1 cases ${opts.shape.join('×')} (site style ${style}, ${phantom.style.orientation}), budget ${memoryBudgetMB} MB${annotatedLabels ? `, annotates ${JSON.stringify(annotatedLabels)}` : ''}`);
  return site;
}

/** coordinator.json of the run (before validation by CoordinatorConfigSchema). */
function coordinatorConfigFor(opts: SimulateOptions, port: number, token: string, ids: readonly string[]) {
  const minSites = opts.drop ? Math.max(1, opts.sites - 1) : opts.sites;
  return {
    host: '127.0.0.1',
    port,
    stateDir: 'state',
    secretKey: 'keys/coordinator.key',
    publicKey: 'keys/coordinator.pub',
    dashboardToken: token,
    sites: ids.map((id) => ({ id, publicKey: `sites/${id}.pub` })),
    experiment: {
      id: `simulate-${opts.task}-${opts.model}`,
      task: opts.task === 'brain' ? 'Task01_BrainTumour (phantom)' : 'Task03_Liver (phantom)',
      labels: opts.task === 'brain' ? { ...BRAIN_LABELS } : { ...LIVER_LABELS },
      modalities: opts.task === 'brain' ? { ...BRAIN_MODALITIES } : { ...LIVER_MODALITIES },
      model: { mode: opts.model, preset: opts.preset, norm: 'instance', cascadeFactor: 0.5 },
      rounds: opts.rounds,
      minSites,
      fractionFit: 1,
      localSteps: opts.steps,
      learningRate: opts.learningRate,
      roundDeadlineSeconds: opts.roundDeadlineSeconds,
      // Site processes need a few seconds to start (backend self-check) before round 1.
      startupGraceSeconds: 120,
      strategy: simulationStrategy(opts),
      ...(opts.secureAggregation ? { aggregation: { secure: simulationSecureAggregation(opts.secureAggregation, opts.dp, minSites) } } : {}),
      // Keep every round's checkpoint: the report names each one's SHA-256.
      checkpointRetention: opts.rounds + 1,
      seed: opts.seed,
    },
  };
}
