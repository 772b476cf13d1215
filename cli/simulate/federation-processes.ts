/**
 * The simulated federation's processes: the coordinator (started and waited for on /healthz,
 * killed and restarted on demand) and one `patchfed site` process per site. A coordinator that
 * dies unexpectedly is fatal to the run; a site that dies is reported and the federation goes on.
 */
import { join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { ProcessSupervisor, type ManagedProcess } from './processes.ts';
import type { RunLayout } from './run-dir.ts';
import { health, logTail, sleep } from './wait.ts';

/** How long the coordinator may take to answer /healthz after it was started (polls × interval). */
const HEALTH_POLLS = 600;
const HEALTH_POLL_MS = 200;

export class SimulatedFederation {
  private readonly supervisor = new ProcessSupervisor();
  private coordinator: ManagedProcess | null = null;
  private readonly siteProcs = new Map<string, ManagedProcess>();
  /** Why the run cannot go on (the coordinator died), once it happened. */
  private fatal: string | null = null;
  /** Last resort if this process exits without the clean stop (e.g. a second Ctrl-C): no orphans. */
  private readonly killChildren = (): void => this.supervisor.killAllNow();

  constructor(
    private readonly layout: RunLayout,
    private readonly stop: AbortSignal,
    out: (text: string) => void,
  ) {
    process.on('exit', this.killChildren);
    this.supervisor.onUnexpectedExit = (p, code, signal) => {
      const why = signal ? `signal ${signal}` : `exit code ${code}`;
      if (p === this.coordinator) this.fatal = `the coordinator exited unexpectedly (${why}); its log ${p.logFile} ends with:\n${logTail(p.logFile)}`;
      else out(`! ${p.name} exited unexpectedly (${why}); the federation carries on without it. Log ${p.logFile}:\n${logTail(p.logFile, 8)}`);
    };
  }

  /** Starts the coordinator and waits until /healthz answers (or the run is stopped). */
  async startCoordinator(): Promise<void> {
    const logFile = join(this.layout.logDir, 'coordinator.log');
    this.coordinator = this.supervisor.start('coordinator', ['coordinator', '--config', this.layout.coordinatorConfigPath], logFile);
    for (let i = 0; i < HEALTH_POLLS && !this.stop.aborted; i++) {
      this.throwIfFatal();
      if (await health(this.layout.url)) return;
      await sleep(HEALTH_POLL_MS);
    }
    if (!this.stop.aborted) throw new PatchFedError('E_COORDINATOR', `the coordinator did not answer on ${this.layout.url}/healthz within 120 s; see ${logFile}`);
  }

  /** SIGKILL to the coordinator (fault injection); `startCoordinator` brings it back. */
  async killCoordinator(): Promise<void> {
    if (this.coordinator) await this.supervisor.kill(this.coordinator);
  }

  get coordinatorRunning(): boolean {
    return this.coordinator?.running ?? false;
  }

  startSite(id: string): void {
    const site = this.layout.sites.find((s) => s.id === id);
    if (!site) throw new PatchFedError('E_OPTION', `no simulated site '${id}'`);
    this.siteProcs.set(id, this.supervisor.start(id, ['site', '--config', site.configPath], join(this.layout.logDir, `${id}.log`)));
  }

  /** SIGKILL to a site (fault injection); false when it is not running. */
  async killSite(id: string): Promise<boolean> {
    const p = this.siteProcs.get(id);
    if (!p) return false;
    await this.supervisor.kill(p);
    return true;
  }

  hasSite(id: string): boolean {
    return this.siteProcs.has(id);
  }

  throwIfFatal(): void {
    if (this.fatal) throw new PatchFedError('E_COORDINATOR', this.fatal);
  }

  /** Throws when every site process that was started has exited. */
  throwIfNoSiteRuns(): void {
    const procs = [...this.siteProcs.values()];
    const first = procs[0];
    if (!first || procs.some((p) => p.running)) return;
    throw new PatchFedError('E_SITES', `every site process has exited; the last lines of ${this.layout.sites[0]?.id ?? first.name}'s log:\n${logTail(first.logFile)}`);
  }

  /** SIGTERM to every site process (escalating to SIGKILL), waiting for them all. */
  async stopSites(): Promise<void> {
    await Promise.all([...this.siteProcs.values()].map((p) => this.supervisor.stop(p)));
  }

  /** Stops everything still running and forgets the exit hook. */
  async stopAll(): Promise<void> {
    await this.supervisor.stopAll();
    process.off('exit', this.killChildren);
  }
}
