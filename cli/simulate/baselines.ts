/**
 * `--baselines`: what federation buys. After the federated run, with the same phantom data, the
 * same splits, the same initial model and optimiser settings:
 *   local only — each site trains alone for the same rounds × steps and is evaluated on its own
 *                validation split;
 *   pooled     — one model trains on every site's training split together (centralised, as if
 *                the data could be shared) for as many steps as the whole federation ran.
 */
import { join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import type { BackendReport } from '../../site-agent/backend/index.ts';
import type { SimulateOptions } from './options.ts';
import { buildPooledDataset, trainPooled } from './pooled.ts';
import { meanDice, meanOverLabels, type BaselineResult, type LabelDice, type SimulationReport } from './report.ts';
import type { RunLayout } from './run-dir.ts';
import { evaluateAtSites, experimentModel, trainLocalOnly } from './site-eval.ts';

export interface BaselineInput {
  layout: RunLayout;
  opts: SimulateOptions;
  backend: BackendReport;
  initial: NamedWeights;
  federatedDice: Record<string, LabelDice>;
  labels: string[];
  out: (text: string) => void;
  stop: AbortSignal;
}

function summarise(sites: Record<string, LabelDice>, labels: string[], steps: number, wallMs: number): BaselineResult {
  const mean = meanDice(Object.values(sites), labels) ?? {};
  return { sites, meanDice: mean, meanOverLabels: meanOverLabels(mean, labels) ?? 0, steps, wallMs };
}

export async function runBaselines(input: BaselineInput): Promise<NonNullable<SimulationReport['baselines']>> {
  const { layout, opts, backend, initial, labels, out } = input;
  const exp = experimentModel(layout.coordinatorConfig);

  out(`Baseline "local only": each site trains alone, ${opts.rounds} × ${opts.steps} steps…`);
  let t = Date.now();
  const local: Record<string, LabelDice> = {};
  for (const site of layout.sites) {
    if (input.stop.aborted) break;
    const r = await trainLocalOnly(site, exp, backend, initial, opts.rounds, opts.steps);
    local[site.id] = r.dice;
    out(`  ${site.id}: mean Dice ${meanOverLabels(r.dice, labels)?.toFixed(3)} on its validation split (${r.trainingCases} training cases)`);
  }
  const localOnly = summarise(local, labels, opts.rounds * opts.steps, Date.now() - t);

  const pooledSteps = opts.rounds * opts.steps * layout.sites.length;
  out(`Baseline "pooled": one model on all sites' training splits, ${pooledSteps} steps…`);
  t = Date.now();
  const dir = join(layout.dir, 'pooled', 'data');
  const firstSite = layout.sites[0];
  if (!firstSite) throw new PatchFedError('E_OPTION', 'the pooled baseline needs at least one site');
  const { cases } = await buildPooledDataset(layout.sites, dir);
  const weights = await trainPooled(dir, exp, backend, initial, {
    steps: opts.steps * layout.sites.length,
    rounds: opts.rounds,
    budgetMB: Math.max(...layout.sites.map((s) => s.memoryBudgetMB)),
    seed: opts.seed,
    training: firstSite.config.training,
  });
  const pooledSites = await evaluateAtSites(layout.sites, exp, backend, weights);
  const pooled = summarise(pooledSites, labels, pooledSteps, Date.now() - t);
  out(`  pooled model (${cases} training cases): mean Dice ${pooled.meanOverLabels.toFixed(3)}`);

  const fedMean = meanDice(Object.values(input.federatedDice), labels) ?? {};
  return { federated: { sites: input.federatedDice, meanDice: fedMean, meanOverLabels: meanOverLabels(fedMean, labels) ?? 0 }, localOnly, pooled };
}
