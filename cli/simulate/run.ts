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
import { simulatedSiteIds, simulationStrategy, type SimulateOptions } from './options.ts';
import { describeStrategy } from '../../shared/config/strategy.ts';
import type { Experiment } from '../../shared/config/coordinator.ts';
import { ProcessSupervisor, type ManagedProcess } from './processes.ts';
import { completedRounds, buildRounds, diceReported, meanDice, meanOverLabels, type SimulationReport } from './report.ts';
import { createRunDir, type RunLayout } from './run-dir.ts';
import { formatRoundBlock, formatSummary } from './table.ts';
import { health, logTail, sleep } from './wait.ts';
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
  if (opts.drop && !(opts.drop.round >= 1 && opts.drop.round <= opts.rounds)) {
    throw new PatchFedError('E_OPTION', `--drop-site round must be between 1 and --rounds (${opts.rounds}), got ${opts.drop.round}`);
  }
  if (opts.restartCoordinatorAt !== undefined && !(opts.restartCoordinatorAt >= 1 && opts.restartCoordinatorAt <= opts.rounds)) {
    throw new PatchFedError('E_OPTION', `--restart-coordinator-at must be between 1 and --rounds (${opts.rounds}), got ${opts.restartCoordinatorAt}`);
  }
  const ids = simulatedSiteIds(opts.sites);
  if (opts.drop && !ids.includes(opts.drop.siteId)) {
    throw new PatchFedError('E_OPTION', `--drop-site names '${opts.drop.siteId}', but the sites are ${ids.join(', ')}`);
  }
  out(`PatchFed simulation: ${opts.sites} sites, ${opts.rounds} rounds, ${opts.task} phantoms ${opts.shape.join('×')}, ${opts.model} mode, ${opts.preset} U-Net, ${opts.steps} local steps/round, lr ${opts.learningRate}, ${describeStrategy(simulationStrategy(opts))}`);
  out(`Run directory ${resolve(opts.runDir)}`);
  const layout = await createRunDir(opts, out);
  const labels = labelNames(layout);
  const exp = layout.coordinatorConfig.experiment;
  const records = new CoordinatorRecords(layout.stateDir, exp.id);
  const supervisor = new ProcessSupervisor();
  // Last resort if this process exits without the clean stop (e.g. a second Ctrl-C): no orphans.
  const killChildren = () => supervisor.killAllNow();
  process.on('exit', killChildren);
  const injected: SimulationReport['injected'] = {};
  let status: SimulationReport['summary']['status'] = 'interrupted';
  let message = 'Interrupted.';
  let finalDice: Record<string, Record<string, number>> | null = null;
  let crossSite: CrossSiteTable | null = null;
  let baselines: SimulationReport['baselines'];
  let coordinator: ManagedProcess | null = null;
  const siteProcs = new Map<string, ManagedProcess>();
  let fatal: string | null = null;
  let result: SimulationResult | undefined;

  supervisor.onUnexpectedExit = (p, code, signal) => {
    const why = signal ? `signal ${signal}` : `exit code ${code}`;
    if (p === coordinator) fatal = `the coordinator exited unexpectedly (${why}); its log ${p.logFile} ends with:\n${logTail(p.logFile)}`;
    else out(`! ${p.name} exited unexpectedly (${why}); the federation carries on without it. Log ${p.logFile}:\n${logTail(p.logFile, 8)}`);
  };
  const startCoordinator = async (): Promise<void> => {
    coordinator = supervisor.start('coordinator', ['coordinator', '--config', layout.coordinatorConfigPath], join(layout.logDir, 'coordinator.log'));
    for (let i = 0; i < 600 && !stop.aborted; i++) {
      if (fatal) throw new PatchFedError('E_COORDINATOR', fatal);
      if (await health(layout.url)) return;
      await sleep(200);
    }
    if (!stop.aborted) throw new PatchFedError('E_COORDINATOR', `the coordinator did not answer on ${layout.url}/healthz within 120 s; see ${join(layout.logDir, 'coordinator.log')}`);
  };
  const startSite = (id: string): void => {
    const site = layout.sites.find((s) => s.id === id)!;
    siteProcs.set(id, supervisor.start(id, ['site', '--config', site.configPath], join(layout.logDir, `${id}.log`)));
  };

  try {
    out('Starting the coordinator…');
    await startCoordinator();
    out(`\nDashboard: ${layout.url}/?token=${layout.token}\n  (the link sets a cookie; afterwards ${layout.url}/ is enough. Token also in ${layout.coordinatorConfigPath})\n`);
    for (const s of layout.sites) startSite(s.id);
    out(`Started ${layout.sites.length} site processes (logs in ${layout.logDir}); waiting for them to connect…`);

    const printed = new Set<number>();
    const announcedSites = new Set<string>();
    const seenOpen = new Map<number, number>(); // round row id → first seen (ms)
    let lastEventId = 0;
    /** Prints what is new in the coordinator's records (sites online, rounds opened/completed); returns the rounds. */
    const printProgress = (): RoundRow[] => {
      const rows = records.rounds();
      for (const site of records.sites()) {
        if (announcedSites.has(site.id) || !site.plannedPatch) continue;
        announcedSites.add(site.id);
        out(`  ${site.id} online: ${site.backend ?? '?'} backend, budget ${site.memoryBudgetMB ?? '?'} MB → planned patch ${site.plannedPatch.join('×')} batch ${site.plannedBatch ?? '?'}`);
      }
      // What a site or the coordinator says went wrong, as it happens (not only in the logs).
      for (const e of records.events(lastEventId, LIVE_EVENT_KINDS)) {
        lastEventId = e.id;
        out(`  ! ${e.message}`);
      }
      const done = completedRounds(rows);
      for (const row of rows) {
        if (row.status === 'open' && !seenOpen.has(row.id)) {
          seenOpen.set(row.id, Date.now());
          out(`\nround ${row.round}/${opts.rounds}${row.attempt > 1 ? ` (attempt ${row.attempt})` : ''} started: ${row.selected.join(', ')} training ${opts.steps} steps…`);
        }
        if (row.status === 'complete' && row.round >= 1 && !printed.has(row.round)) {
          printed.add(row.round);
          const input = done.get(row.round - 1)?.checkpointVersion ?? null;
          if (input) records.checkpoint(input);
          const info = row.checkpointVersion ? records.checkpoint(row.checkpointVersion) : null;
          out(formatRoundBlock(row, opts.rounds, labels, input, info?.sha256 ?? null));
        }
      }
      return rows;
    };
    let dropDone = false;
    let dropRejoinAfterRound: number | null = null;
    let restartDone = false;
    for (;;) {
      if (stop.aborted) break;
      if (fatal) throw new PatchFedError('E_COORDINATOR', fatal);
      if (siteProcs.size > 0 && [...siteProcs.values()].every((p) => !p.running) && !dropRejoinAfterRound) {
        throw new PatchFedError('E_SITES', `every site process has exited; the last lines of ${layout.sites[0]!.id}'s log:\n${logTail(siteProcs.values().next().value!.logFile)}`);
      }
      const rows = printProgress();
      const done = completedRounds(rows);
      const open = rows.find((r) => r.status === 'open');
      // Fault injection: both happen while the sites are busy training in the round.
      if (opts.drop && !dropDone && open && open.round === opts.drop.round && Date.now() - seenOpen.get(open.id)! > 1000) {
        const p = siteProcs.get(opts.drop.siteId);
        if (p && !open.updates.some((u) => u.siteId === opts.drop!.siteId)) {
          out(`! dropping ${opts.drop.siteId} out of round ${open.round}: SIGKILL to its process (the round goes on with the other sites and closes once they are done and it has stayed away a while, or at the ${exp.roundDeadlineSeconds} s deadline)`);
          injected.dropSite = { ...opts.drop, killedAt: new Date().toISOString() };
          await supervisor.kill(p);
          dropRejoinAfterRound = open.round;
        } else {
          out(`! ${opts.drop.siteId} had already sent its update for round ${open.round}; not dropped (use more --steps)`);
        }
        dropDone = true;
      }
      if (dropRejoinAfterRound !== null && done.has(dropRejoinAfterRound)) {
        out(`  ${opts.drop!.siteId} restarts and rejoins (it receives the latest checkpoint)`);
        startSite(opts.drop!.siteId);
        dropRejoinAfterRound = null;
      }
      if (opts.restartCoordinatorAt && !restartDone && open && open.round === opts.restartCoordinatorAt && Date.now() - seenOpen.get(open.id)! > 1000) {
        restartDone = true;
        out(`! killing the coordinator (SIGKILL) in the middle of round ${open.round}, then restarting it on the same state directory…`);
        injected.coordinatorRestart = { round: open.round, killedAt: new Date().toISOString() };
        await supervisor.kill(coordinator!);
        records.close();
        await startCoordinator();
        const h = await health(layout.url);
        out(`  coordinator restarted: resumes after round ${h?.lastCompletedRound ?? '?'}; sites reconnect with backoff`);
      }
      // A round can finish before the poll sees it running (very few --steps): say so, never silently skip.
      if (opts.drop && !dropDone && done.has(opts.drop.round)) {
        dropDone = true;
        out(`! round ${opts.drop.round} finished before ${opts.drop.siteId} could be dropped out of it; use more --steps`);
      }
      if (opts.restartCoordinatorAt && !restartDone && done.has(opts.restartCoordinatorAt)) {
        restartDone = true;
        out(`! round ${opts.restartCoordinatorAt} finished before the coordinator could be killed in it; use more --steps`);
      }
      const h = await health(layout.url);
      if (h?.end) {
        status = h.end;
        // The last round may have completed between reading the records and asking /healthz.
        printProgress();
        break;
      }
      await sleep(500);
    }
    if (stop.aborted) throw new Interrupted();

    if (status === 'complete') {
      const finalRow = [...completedRounds(records.rounds()).values()].at(-1);
      if (finalRow?.checkpointVersion) {
        out('\nWaiting for the sites to score the final model on their test splits (cross-site validation)…');
        const { waitForCrossSite, missingReports, sitesWithTestCases } = await import('./cross-site.ts');
        const ids = await sitesWithTestCases(layout.sites);
        crossSite = await waitForCrossSite(records.artifactPath(finalRow.checkpointVersion), ids, true, CROSS_SITE_WAIT_MS, stop);
        const missing = missingReports(crossSite, ids, true);
        if (crossSite) out(formatCrossSiteTable(crossSite).join('\n'));
        if (missing.length > 0) out(`! no cross-site validation report from ${missing.join(', ')} within ${CROSS_SITE_WAIT_MS / 1000} s`);
      }
    }
    out('\nStopping the site processes…');
    await Promise.all([...siteProcs.values()].map((p) => supervisor.stop(p)));
    const rows = records.rounds();
    const done = completedRounds(rows);
    const last = Math.max(0, ...done.keys());
    message = status === 'complete' ? `Experiment complete after ${last} round(s).` : `Experiment stopped after round ${last}: ${rows.at(-1)?.failureReason ?? 'see the coordinator log'}.`;
    if (last >= 1) {
      out(`Evaluating the final global model (round ${last}) on every site's validation split…`);
      const { evaluateAtSites, experimentModel, readCheckpointWeights, simulatorBackend } = await import('./site-eval.ts');
      const backend = await simulatorBackend(opts.backend);
      const version = done.get(last)!.checkpointVersion!;
      const weights = readCheckpointWeights(records.artifactPath(version), records.checkpoint(version)!);
      finalDice = await evaluateAtSites(layout.sites, experimentModel(layout.coordinatorConfig), backend, weights);
      if (opts.baselines && !stop.aborted) {
        const v0 = done.get(0)!.checkpointVersion!;
        const initial = readCheckpointWeights(records.artifactPath(v0), records.checkpoint(v0)!);
        baselines = await runBaselines({ layout, opts, backend, initial, federatedDice: finalDice, labels, out, stop });
      }
    }
  } catch (e) {
    if (!(e instanceof Interrupted)) {
      status = 'stopped';
      message = `Simulation failed: ${e instanceof Error ? e.message : String(e)}`;
      throw e;
    }
  } finally {
    if (stop.aborted) message = 'Interrupted (Ctrl-C): partial report.';
    const report = { ...buildReport(layout, opts, records, labels, finalDice, baselines, injected, status, message, started), crossSiteValidation: crossSite };
    const reportPath = resolve(opts.reportPath ?? join(layout.dir, 'report.json'));
    mkdirSync(dirname(reportPath), { recursive: true });
    writeFileSync(reportPath, `${JSON.stringify(report, null, 2)}\n`);
    result = { report, reportPath };
    out(formatSummary(report));
    out(`Report: ${reportPath}`);
    if (opts.keepOpen && !stop.aborted && coordinator && (coordinator as ManagedProcess).running) {
      await Promise.all([...siteProcs.values()].map((p) => supervisor.stop(p)));
      out(`\nThe coordinator keeps serving the dashboard at ${layout.url}/ — Ctrl-C to stop.`);
      await new Promise<void>((r) => stop.addEventListener('abort', () => r(), { once: true }));
    }
    records.close();
    await supervisor.stopAll();
    process.off('exit', killChildren);
  }
  return result!;
}

class Interrupted extends Error {}

/** How long the simulator waits for the sites' cross-site validation reports after the last round. */
const CROSS_SITE_WAIT_MS = 300_000;

/** Coordinator events printed in the live output: a site declining a round, storage trouble, operator actions. */
const LIVE_EVENT_KINDS = ['round-declined', 'round-failed', 'health', 'experiment-resumed', 'state-repaired'] as const;

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
