/**
 * `patchfed simulate`: a whole federation on this machine. Creates the run directory (phantom
 * hospitals, keys, configs), starts the coordinator and one `patchfed site` process per site on
 * loopback, prints a block per completed round while it runs (read from the coordinator's
 * records), injects the requested faults (a site dropping out mid-round, the coordinator
 * killed and restarted), evaluates the final global model, optionally trains the local-only
 * and pooled baselines, and writes the JSON report.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { CoordinatorRecords, type RoundRow } from './coordinator-records.ts';
import { checkFaultOptions, FaultInjector } from './fault-injection.ts';
import { SimulatedFederation } from './federation-processes.ts';
import { simulationStrategy, type SimulateOptions } from './options.ts';
import { describeStrategy } from '../../shared/config/strategy.ts';
import type { Experiment } from '../../shared/config/coordinator.ts';
import { RoundProgressPrinter } from './progress-printer.ts';
import { completedRounds, buildRounds, diceReported, meanDice, meanOverLabels, type SimulationReport } from './report.ts';
import { createRunDir, type RunLayout } from './run-dir.ts';
import { formatSummary } from './table.ts';
import { health, sleep } from './wait.ts';
import { runBaselines } from './baselines.ts';
import { formatCrossSiteTable, type CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';

export interface SimulationResult {
  report: SimulationReport;
  reportPath: string;
}

type Out = (text: string) => void;

/** Foreground label names in index order. */
function labelNames(layout: RunLayout): string[] {
  return Object.entries(layout.coordinatorConfig.experiment.labels)
    .map(([k, v]) => [Number(k), v] as const)
    .filter(([k]) => k !== 0)
    .sort((a, b) => a[0] - b[0])
    .map(([, v]) => v);
}

export async function runSimulation(opts: SimulateOptions, out: Out, stop: AbortSignal): Promise<SimulationResult> {
  const started = Date.now();
  checkFaultOptions(opts);
  out(`PatchFed simulation: ${opts.sites} sites, ${opts.rounds} rounds, ${opts.task} phantoms ${opts.shape.join('×')}, ${opts.model} mode, ${opts.preset} U-Net, ${opts.steps} local steps/round, lr ${opts.learningRate}, ${describeStrategy(simulationStrategy(opts))}`);
  out(`Run directory ${resolve(opts.runDir)}`);
  const layout = await createRunDir(opts, out);
  const run: SimulationRun = { layout, opts, labels: labelNames(layout), records: new CoordinatorRecords(layout.stateDir, layout.coordinatorConfig.experiment.id), out, stop };
  const federation = new SimulatedFederation(layout, stop, out);
  const faults = new FaultInjector(opts, federation, run.records, layout.url, layout.coordinatorConfig.experiment.roundDeadlineSeconds, out);
  const outcome: RunOutcome = { status: 'interrupted', message: 'Interrupted.', finalDice: null, crossSite: null, baselines: undefined };
  let failure: unknown = null;
  try {
    await startFederation(run, federation);
    const end = await followRounds(run, federation, faults);
    if (end) outcome.status = end;
    if (stop.aborted) throw new Interrupted();
    if (outcome.status === 'complete') outcome.crossSite = await collectCrossSite(run);
    out('\nStopping the site processes…');
    await federation.stopSites();
    Object.assign(outcome, await evaluateOutcome(run, outcome.status));
  } catch (e) {
    if (!(e instanceof Interrupted)) {
      outcome.status = 'stopped';
      outcome.message = `Simulation failed: ${e instanceof Error ? e.message : String(e)}`;
      failure = e;
    }
  }
  const result = await finishRun(run, federation, faults, outcome, started);
  if (failure !== null) throw failure;
  return result;
}

/** What one simulation works with, besides its processes. */
interface SimulationRun {
  layout: RunLayout;
  opts: SimulateOptions;
  labels: string[];
  records: CoordinatorRecords;
  out: Out;
  stop: AbortSignal;
}

/** How the run ended, as far as it got: the report is written from this whatever happened. */
interface RunOutcome {
  status: SimulationReport['summary']['status'];
  message: string;
  finalDice: Record<string, Record<string, number>> | null;
  crossSite: CrossSiteTable | null;
  baselines: SimulationReport['baselines'];
}

async function startFederation({ layout, out }: SimulationRun, federation: SimulatedFederation): Promise<void> {
  out('Starting the coordinator…');
  await federation.startCoordinator();
  out(`\nDashboard: ${layout.url}/?token=${layout.token}\n  (the link sets a cookie; afterwards ${layout.url}/ is enough. Token also in ${layout.coordinatorConfigPath})\n`);
  for (const s of layout.sites) federation.startSite(s.id);
  out(`Started ${layout.sites.length} site processes (logs in ${layout.logDir}); waiting for them to connect…`);
}

/**
 * Polls the coordinator until the experiment ends (its end status) or the run is stopped (null):
 * prints the progress, injects the requested faults, and fails when the coordinator or every
 * site process died.
 */
async function followRounds(run: SimulationRun, federation: SimulatedFederation, faults: FaultInjector): Promise<SimulationReport['summary']['status'] | null> {
  const progress = new RoundProgressPrinter(run.records, run.opts, run.labels, run.out);
  for (;;) {
    if (run.stop.aborted) return null;
    federation.throwIfFatal();
    if (!faults.waitingForRejoin) federation.throwIfNoSiteRuns();
    const rows = progress.print();
    await faults.step({ open: rows.find((r) => r.status === 'open'), done: completedRounds(rows), openFor: (id) => progress.openFor(id) });
    const h = await health(run.layout.url);
    if (h?.end) {
      // The last round may have completed between reading the records and asking /healthz.
      progress.print();
      return h.end;
    }
    await sleep(500);
  }
}

/** After the last round: the sites' cross-site validation of the final model, printed as a table. */
async function collectCrossSite({ layout, records, out, stop }: SimulationRun): Promise<CrossSiteTable | null> {
  const finalRow = [...completedRounds(records.rounds()).values()].at(-1);
  if (!finalRow?.checkpointVersion) return null;
  out('\nWaiting for the sites to score the final model on their test splits (cross-site validation)…');
  const { waitForCrossSite, missingReports, sitesWithTestCases } = await import('./cross-site.ts');
  const ids = await sitesWithTestCases(layout.sites);
  const crossSite = await waitForCrossSite(records.artifactPath(finalRow.checkpointVersion), ids, true, CROSS_SITE_WAIT_MS, stop);
  const missing = missingReports(crossSite, ids, true);
  if (crossSite) out(formatCrossSiteTable(crossSite).join('\n'));
  if (missing.length > 0) out(`! no cross-site validation report from ${missing.join(', ')} within ${CROSS_SITE_WAIT_MS / 1000} s`);
  return crossSite;
}

/** The final global model scored at every site (and the baselines when asked for), and the summary line. */
async function evaluateOutcome(run: SimulationRun, status: RunOutcome['status']): Promise<Pick<RunOutcome, 'message' | 'finalDice' | 'baselines'>> {
  const { layout, opts, records, labels, out, stop } = run;
  const rows = records.rounds();
  const done = completedRounds(rows);
  const last = Math.max(0, ...done.keys());
  const message = status === 'complete' ? `Experiment complete after ${last} round(s).` : `Experiment stopped after round ${last}: ${rows.at(-1)?.failureReason ?? 'see the coordinator log'}.`;
  const finalVersion = done.get(last)?.checkpointVersion;
  if (last < 1 || !finalVersion) return { message, finalDice: null, baselines: undefined };
  out(`Evaluating the final global model (round ${last}) on every site's validation split…`);
  const { evaluateAtSites, experimentModel, readCheckpointWeights, simulatorBackend } = await import('./site-eval.ts');
  const backend = await simulatorBackend(opts.backend);
  const checkpointWeights = (version: number) => {
    const info = records.checkpoint(version);
    if (!info) throw new PatchFedError('E_STATE', `checkpoint v${version} is not in the coordinator's records`);
    return readCheckpointWeights(records.artifactPath(version), info);
  };
  const finalDice = await evaluateAtSites(layout.sites, experimentModel(layout.coordinatorConfig), backend, checkpointWeights(finalVersion));
  const initialVersion = done.get(0)?.checkpointVersion;
  if (!opts.baselines || stop.aborted || !initialVersion) return { message, finalDice, baselines: undefined };
  const baselines = await runBaselines({ layout, opts, backend, initial: checkpointWeights(initialVersion), federatedDice: finalDice, labels, out, stop });
  return { message, finalDice, baselines };
}

/**
 * Writes the report (also after a failure or Ctrl-C: a partial report), prints the summary,
 * keeps the dashboard up with --keep-open, then stops every process.
 */
async function finishRun(run: SimulationRun, federation: SimulatedFederation, faults: FaultInjector, outcome: RunOutcome, started: number): Promise<SimulationResult> {
  const { layout, opts, records, out, stop } = run;
  try {
    if (stop.aborted) outcome.message = 'Interrupted (Ctrl-C): partial report.';
    const report = {
      ...buildReport(layout, opts, records, run.labels, outcome.finalDice, outcome.baselines, faults.injected, outcome.status, outcome.message, started),
      crossSiteValidation: outcome.crossSite,
    };
    const reportPath = resolve(opts.reportPath ?? join(layout.dir, 'report.json'));
    mkdirSync(dirname(reportPath), { recursive: true });
    writeFileSync(reportPath, `${JSON.stringify(report, null, 2)}\n`);
    out(formatSummary(report));
    out(`Report: ${reportPath}`);
    if (opts.keepOpen && !stop.aborted && federation.coordinatorRunning) {
      await federation.stopSites();
      out(`\nThe coordinator keeps serving the dashboard at ${layout.url}/ — Ctrl-C to stop.`);
      await new Promise<void>((r) => stop.addEventListener('abort', () => r(), { once: true }));
    }
    return { report, reportPath };
  } finally {
    records.close();
    await federation.stopAll();
  }
}

class Interrupted extends Error {}

/** How long the simulator waits for the sites' cross-site validation reports after the last round. */
const CROSS_SITE_WAIT_MS = 300_000;

function buildReport(
  layout: RunLayout,
  opts: SimulateOptions,
  records: CoordinatorRecords,
  labels: string[],
  finalDice: Record<string, Record<string, number>> | null,
  baselines: SimulationReport['baselines'],
  injected: SimulationReport['injected'],
  status: SimulationReport['summary']['status'],
  message: string,
  started: number,
): SimulationReport {
  const rows: RoundRow[] = records.rounds();
  const done = completedRounds(rows);
  const rounds = buildRounds({ rows, labels, checkpoint: (v) => records.checkpoint(v), finalDice });
  const initialDice = meanDice([...diceReported(done.get(1)).values()], labels);
  const v0 = done.get(0)?.checkpointVersion;
  const initialMean = meanOverLabels(initialDice, labels);
  const lastRound = rounds.at(-1);
  const finalMean = lastRound?.globalMeanDice ?? null;
  const siteRows = new Map(records.sites().map((s) => [s.id, s]));
  const e = layout.coordinatorConfig.experiment;
  return {
    format: 'patchfed-simulate/1',
    createdAt: new Date().toISOString(),
    runDir: layout.dir,
    experiment: { id: e.id, task: e.task, mode: e.model.mode, preset: opts.preset, strategy: e.strategy.name, strategyDescription: describeStrategy(e.strategy), rounds: e.rounds, localSteps: e.localSteps, learningRate: e.learningRate, foregroundRate: opts.foregroundRate },
    labels,
    sites: layout.sites.map((s) => ({
      id: s.id,
      memoryBudgetMB: s.memoryBudgetMB,
      siteStyle: s.siteStyle,
      orientation: s.orientation,
      patch: siteRows.get(s.id)?.plannedPatch ?? null,
      batch: siteRows.get(s.id)?.plannedBatch ?? null,
      backend: siteRows.get(s.id)?.backend ?? null,
    })),
    initial: { globalDice: initialDice, globalMeanDice: initialMean, checkpointSha256: v0 ? (records.checkpoint(v0)?.sha256 ?? null) : null },
    rounds,
    ...privacyOf(records, lastRound?.checkpointVersion),
    ...(baselines ? { baselines } : {}),
    injected,
    ...secureAggregationOf(records, e),
    summary: {
      status,
      message,
      wallTimeMs: Date.now() - started,
      roundsCompleted: rounds.length,
      initialMeanDice: initialMean,
      finalMeanDice: finalMean,
      improved: initialMean !== null && finalMean !== null ? finalMean > initialMean : null,
      totalBytesMoved: rounds.reduce((s, r) => s + (r.bytesMoved ?? 0), 0),
      finalCheckpointSha256: lastRound?.checkpointSha256 ?? null,
    },
  };
}

/** The report's secure-aggregation fields: on or off, and the dropouts its protocol handled. */
function secureAggregationOf(records: CoordinatorRecords, e: Experiment): Pick<SimulationReport, 'secureAggregation' | 'secureAggregationDetails'> {
  const secure = e.aggregation?.secure;
  if (!secure) return { secureAggregation: false };
  const dropouts = records
    .events(0, ['dropout'])
    .map((ev) => ev.message)
    .filter((m) => m.startsWith('Secure aggregation'));
  return { secureAggregation: true, secureAggregationDetails: { threshold: secure.threshold, dropouts } };
}

/** The report's privacy section from the last checkpoint's ledger (nothing without DP). */
function privacyOf(records: CoordinatorRecords, version: number | undefined): Pick<SimulationReport, 'privacy'> {
  const p = version ? records.privacy(version) : null;
  if (!p) return {};
  const perRound = p.perRound.map((r) => ({ round: r.round, epsilon: r.epsilon, epsilonSpent: r.epsilonSpent }));
  return { privacy: { mode: p.mode, noiseMultiplier: p.noiseMultiplier, clipNorm: p.clipNorm, delta: p.delta, epsilonBudget: p.epsilonBudget, epsilon: p.epsilon, perRound } };
}
