/**
 * `patchfed bench chaos`: a 3-site simulated federation (the simulate run directory and process
 * machinery: real `patchfed coordinator` and `patchfed site` processes on loopback) under
 * repeated `kill -9` of the coordinator and of random sites at random moments. Every victim is
 * started again after a random pause. When the kills are done the experiment must still complete,
 * and the state it leaves must be sound:
 *  - every stored checkpoint verifies (size, sha256, Ed25519 signature with the coordinator key,
 *    and its experiment.json signature);
 *  - one complete round per round number 0…R, with strictly increasing checkpoint versions;
 *  - no checkpoint was quarantined (nothing was left corrupt by a kill) and the state DB passes
 *    PRAGMA integrity_check.
 * The report (JSON) lists every kill with its moment and what the federation was doing.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { CoordinatorConfigSchema } from '../shared/config/coordinator.ts';
import { fingerprint, loadPublicKeyFile } from '../shared/crypto/keys.ts';
import { PatchFedError } from '../shared/errors.ts';
import { EXPERIMENT_FILE, readExperimentFile } from '../shared/protocol/experiment-file.ts';
import { SeededRandom } from '../shared/random.ts';
import { CheckpointStore, StateDb, versionDirName } from '../coordinator/store/index.ts';
import { CoordinatorRecords } from '../cli/simulate/coordinator-records.ts';
import { SIMULATE_DEFAULTS, type SimulateOptions } from '../cli/simulate/options.ts';
import { ProcessSupervisor, type ManagedProcess } from '../cli/simulate/processes.ts';
import { createRunDir, type RunLayout } from '../cli/simulate/run-dir.ts';
import { health, sleep } from '../cli/simulate/wait.ts';

export interface ChaosOptions {
  runDir: string;
  /** kill -9 to deliver (coordinator and sites together). */
  kills: number;
  rounds: number;
  steps: number;
  seed: number;
  /** Fraction of kills aimed at the coordinator (the rest at a random site). */
  coordinatorShare: number;
  /** Pause between kills, uniform in [min, max] seconds. */
  intervalSeconds: [number, number];
  /** Give up (report failure) after this long. */
  timeoutMinutes: number;
  backend: SimulateOptions['backend'];
  log: (line: string) => void;
}

export interface ChaosKill {
  n: number;
  target: string;
  atSeconds: number;
  /** Rounds complete and the open round (if any) when the kill landed. */
  lastCompletedRound: number | null;
  openRound: { round: number; attempt: number } | null;
  /** Seconds until the victim was started again. */
  restartAfterSeconds: number;
}

export interface ChaosReport {
  format: 'patchfed-chaos/1';
  runDir: string;
  options: Omit<ChaosOptions, 'log' | 'runDir'>;
  kills: ChaosKill[];
  coordinatorKills: number;
  siteKills: number;
  completed: boolean;
  roundsCompleted: number;
  /** Round attempts, all rounds together (a round retried after a kill counts each attempt). */
  roundAttempts: number;
  failedAttempts: number;
  checkpoints: { stored: number; verified: number; problems: string[] };
  quarantined: number;
  versionsMonotonic: boolean;
  duplicateRounds: number[];
  missingRounds: number[];
  dbIntegrity: string;
  wallSeconds: number;
  ok: boolean;
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const seconds = () => (Date.now() - started) / 1000;
  const rng = new SeededRandom(opts.seed);
  const layout = await createChaosRunDir(opts);
  const processes = new ChaosProcesses(layout);
  const killChildren = () => processes.supervisor.killAllNow();
  process.on('exit', killChildren);
  const records = new CoordinatorRecords(layout.stateDir, layout.coordinatorConfig.experiment.id);

  const kills: ChaosKill[] = [];
  const deadline = started + opts.timeoutMinutes * 60_000;
  let completed = false;
  try {
    processes.startCoordinator();
    if (!(await processes.waitHealthy(120))) throw new PatchFedError('E_CHAOS', `the coordinator did not come up; see ${layout.logDir}`);
    for (const s of layout.sites) processes.startSite(s.id);
    opts.log(`chaos: ${opts.kills} kill -9 over a ${opts.rounds}-round, 3-site federation (run directory ${layout.dir})`);
    // Let the first round get going before the first kill.
    while (Date.now() < deadline && (records.rounds().length < 2)) await sleep(500);

    for (let n = 1; n <= opts.kills && Date.now() < deadline; n++) {
      kills.push(await killAndRestart(n, { opts, rng, records, processes, seconds }));
    }
    opts.log('chaos: kills done; waiting for the experiment to complete…');
    completed = await waitForCompletion(processes, deadline);
  } finally {
    records.close();
    await processes.supervisor.stopAll();
    process.off('exit', killChildren);
  }
  const report = checkState(layout, opts, kills, completed, Math.round(seconds()));
  writeFileSync(join(layout.dir, 'chaos-report.json'), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

/** A tiny 3-site liver federation whose experiment tolerates the failed rounds chaos causes. */
async function createChaosRunDir(opts: ChaosOptions): Promise<RunLayout> {
  const layout = await createRunDir(
    {
      ...SIMULATE_DEFAULTS,
      sites: 3,
      rounds: opts.rounds,
      steps: opts.steps,
      task: 'liver',
      preset: 'tiny',
      cases: 4,
      shape: [24, 24, 16],
      budgetsMB: [64, 80, 96],
      runDir: opts.runDir,
      backend: opts.backend,
      seed: opts.seed,
    },
    (line) => opts.log(line),
  );
  // Chaos makes rounds fail (a killed site, a killed coordinator): never stop the experiment for it.
  tuneExperiment(layout, { maxRoundAttempts: 1000, roundDeadlineSeconds: 90, startupGraceSeconds: 30, minSites: 2 });
  return layout;
}

/** The coordinator and site processes of the run, (re)started by name. */
class ChaosProcesses {
  readonly supervisor = new ProcessSupervisor();
  coordinator: ManagedProcess | null = null;
  readonly sites = new Map<string, ManagedProcess>();

  constructor(private readonly layout: RunLayout) {}

  get url(): string {
    return this.layout.url;
  }

  siteIds(): string[] {
    return this.layout.sites.map((s) => s.id);
  }

  startCoordinator(): void {
    this.coordinator = this.supervisor.start('coordinator', ['coordinator', '--config', this.layout.coordinatorConfigPath], join(this.layout.logDir, 'coordinator.log'));
  }

  startSite(id: string): void {
    const site = this.layout.sites.find((s) => s.id === id);
    if (!site) throw new PatchFedError('E_CHAOS', `no site '${id}'`);
    this.sites.set(id, this.supervisor.start(id, ['site', '--config', site.configPath], join(this.layout.logDir, `${id}.log`)));
  }

  async waitHealthy(limitSeconds: number): Promise<boolean> {
    const until = Date.now() + limitSeconds * 1000;
    while (Date.now() < until) {
      if (await health(this.layout.url)) return true;
      await sleep(200);
    }
    return false;
  }
}

interface KillContext {
  opts: ChaosOptions;
  rng: SeededRandom;
  records: CoordinatorRecords;
  processes: ChaosProcesses;
  /** Seconds since the bench started. */
  seconds: () => number;
}

/** After a random pause, kill -9 the coordinator or a random site, and start it again after another. */
async function killAndRestart(n: number, { opts, rng, records, processes, seconds }: KillContext): Promise<ChaosKill> {
  const [lo, hi] = opts.intervalSeconds;
  await sleep(1000 * (lo + (hi - lo) * rng.next()));
  const rows = records.rounds();
  const open = rows.find((r) => r.status === 'open');
  const done = rows.filter((r) => r.status === 'complete').map((r) => r.round);
  const hitCoordinator = rng.next() < opts.coordinatorShare;
  const target = hitCoordinator ? 'coordinator' : randomSiteId(processes, rng);
  const victim = hitCoordinator ? processes.coordinator : processes.sites.get(target);
  const restartAfter = 0.2 + 2.8 * rng.next();
  if (victim) await processes.supervisor.kill(victim);
  const kill: ChaosKill = {
    n,
    target,
    atSeconds: Math.round(seconds() * 10) / 10,
    lastCompletedRound: done.length > 0 ? Math.max(...done) : null,
    openRound: open ? { round: open.round, attempt: open.attempt } : null,
    restartAfterSeconds: Math.round(restartAfter * 10) / 10,
  };
  opts.log(`  kill ${n}/${opts.kills} at ${seconds().toFixed(1)} s: kill -9 ${target}${open ? ` during round ${open.round} (attempt ${open.attempt})` : ''}; restart in ${restartAfter.toFixed(1)} s`);
  await sleep(restartAfter * 1000);
  if (hitCoordinator) {
    records.close();
    processes.startCoordinator();
  } else {
    processes.startSite(target);
  }
  return kill;
}

function randomSiteId(processes: ChaosProcesses, rng: SeededRandom): string {
  const ids = processes.siteIds();
  const id = ids[Math.floor(rng.next() * ids.length)];
  if (id === undefined) throw new PatchFedError('E_CHAOS', 'the run has no site to kill');
  return id;
}

/** Polls the coordinator until the experiment ends or the deadline passes; restarts a coordinator that exited. */
async function waitForCompletion(processes: ChaosProcesses, deadline: number): Promise<boolean> {
  while (Date.now() < deadline) {
    const h = await health(processes.url);
    if (h?.end === 'complete') return true;
    if (h?.end === 'stopped') return false;
    if (processes.coordinator && !processes.coordinator.running) processes.startCoordinator(); // it may have exited on its own
    await sleep(1000);
  }
  return false;
}

/** Rewrites the run's coordinator.json experiment knobs (the run directory is the bench's own). */
function tuneExperiment(layout: RunLayout, knobs: Record<string, number>): void {
  const raw = JSON.parse(readFileSync(layout.coordinatorConfigPath, 'utf8')) as { experiment: Record<string, unknown> };
  Object.assign(raw.experiment, knobs);
  writeFileSync(layout.coordinatorConfigPath, `${JSON.stringify(raw, null, 2)}\n`, { mode: 0o600 });
  layout.coordinatorConfig = CoordinatorConfigSchema.parse(raw);
}

/** Everything the chaos must not have broken, checked offline on the state directory. */
function checkState(layout: RunLayout, opts: ChaosOptions, kills: ChaosKill[], completed: boolean, wallSeconds: number): ChaosReport {
  const experimentId = layout.coordinatorConfig.experiment.id;
  const pub = loadPublicKeyFile(join(layout.dir, 'keys', 'coordinator.pub'));
  const keyId = fingerprint(pub);
  const store = new CheckpointStore({
    stateDir: layout.stateDir,
    keyId,
    signer: () => {
      throw new PatchFedError('E_CHAOS', 'the chaos check never writes checkpoints');
    },
    verifier: (bytes, signature, id) => id === keyId && nacl.sign.detached.verify(bytes, signature, pub.signPublicKey),
  });
  const problems: string[] = [];
  const stored = store.list();
  let verified = 0;
  for (const meta of stored) {
    const check = store.verify(meta.version);
    if (!check.ok) {
      problems.push(`${versionDirName(meta.version)}: ${check.reason}`);
      continue;
    }
    try {
      readExperimentFile(readFileSync(join(store.dir, versionDirName(meta.version), EXPERIMENT_FILE)), `${versionDirName(meta.version)}/${EXPERIMENT_FILE}`, pub.signPublicKey);
      verified++;
    } catch (e) {
      problems.push(`${versionDirName(meta.version)}: ${(e as Error).message}`);
    }
  }
  const quarantined = safeCount(join(layout.stateDir, 'quarantine'));
  const dbIntegrity = StateDb.checkIntegrity(join(layout.stateDir, 'state.db'), 'full') ?? 'ok';
  const db = StateDb.open(join(layout.stateDir, 'state.db'));
  let rounds;
  try {
    rounds = db.listRounds(experimentId);
  } finally {
    db.close();
  }
  const complete = rounds.filter((r) => r.status === 'complete').sort((a, b) => a.round - b.round);
  const byRound = new Map<number, number>();
  for (const r of complete) byRound.set(r.round, (byRound.get(r.round) ?? 0) + 1);
  const duplicateRounds = [...byRound].filter(([, n]) => n > 1).map(([r]) => r);
  const last = complete.at(-1)?.round ?? -1;
  const missingRounds = Array.from({ length: last + 1 }, (_, r) => r).filter((r) => !byRound.has(r));
  const versions = complete.map((r) => r.checkpointVersion ?? 0);
  const versionsMonotonic = versions.every((v, i) => i === 0 || v > versions[i - 1]!);
  // Every complete round's checkpoint must be among the verified ones (unless retention pruned it).
  for (const r of complete) {
    const meta = stored.find((m) => m.version === r.checkpointVersion);
    if (meta && (meta.round !== r.round || meta.experimentId !== experimentId)) problems.push(`round ${r.round} records ${versionDirName(meta.version)}, which says round ${meta.round} of '${meta.experimentId}'`);
  }
  const roundsCompleted = Math.max(0, last);
  const ok = completed && roundsCompleted === opts.rounds && problems.length === 0 && verified === stored.length && quarantined === 0 && versionsMonotonic && duplicateRounds.length === 0 && missingRounds.length === 0 && dbIntegrity === 'ok';
  const { log: _log, runDir: _runDir, ...options } = opts;
  return {
    format: 'patchfed-chaos/1',
    runDir: layout.dir,
    options,
    kills,
    coordinatorKills: kills.filter((k) => k.target === 'coordinator').length,
    siteKills: kills.filter((k) => k.target !== 'coordinator').length,
    completed,
    roundsCompleted,
    roundAttempts: rounds.filter((r) => r.round >= 1).length,
    failedAttempts: rounds.filter((r) => r.status === 'failed').length,
    checkpoints: { stored: stored.length, verified, problems },
    quarantined,
    versionsMonotonic,
    duplicateRounds,
    missingRounds,
    dbIntegrity,
    wallSeconds,
    ok,
  };
}

function safeCount(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0; // no quarantine directory: nothing was quarantined
  }
}

export function formatChaosSummary(r: ChaosReport): string {
  return [
    `chaos: ${r.kills.length} kill -9 (${r.coordinatorKills} coordinator, ${r.siteKills} site) in ${r.wallSeconds} s`,
    `  experiment ${r.completed ? 'complete' : 'NOT complete'}: ${r.roundsCompleted}/${r.options.rounds} rounds, ${r.roundAttempts} round attempts (${r.failedAttempts} failed and retried)`,
    `  checkpoints: ${r.checkpoints.verified}/${r.checkpoints.stored} verified (sha256 + signature + experiment.json), ${r.quarantined} quarantined${r.checkpoints.problems.length ? `; problems: ${r.checkpoints.problems.join('; ')}` : ''}`,
    `  rounds: versions ${r.versionsMonotonic ? 'strictly increasing' : 'NOT monotonic'}, duplicate complete rounds ${r.duplicateRounds.length ? r.duplicateRounds.join(',') : 'none'}, missing ${r.missingRounds.length ? r.missingRounds.join(',') : 'none'}; state DB integrity: ${r.dbIntegrity}`,
    `  verdict: ${r.ok ? 'OK' : 'FAILED'} (report ${join(r.runDir, 'chaos-report.json')})`,
  ].join('\n');
}
