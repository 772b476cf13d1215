/**
 * The faults a simulation injects on request, while the sites are busy training in a round:
 * `--drop-site id@round` (SIGKILL to that site's process; it restarts and rejoins once the round
 * is done) and `--restart-coordinator-at round` (SIGKILL to the coordinator, restarted on the
 * same state directory). A round that finishes before its fault could be injected is said so,
 * never silently skipped.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { CoordinatorRecords, RoundRow } from './coordinator-records.ts';
import type { SimulatedFederation } from './federation-processes.ts';
import { simulatedSiteIds, type SimulateOptions } from './options.ts';
import type { SimulationReport } from './report.ts';
import { health } from './wait.ts';

/** A fault is injected only once the round has been running this long (ms), so the sites are mid-training. */
const INJECT_AFTER_MS = 1000;

export type FederationFaults = Pick<SimulateOptions, 'drop' | 'restartCoordinatorAt'>;

/** Usage errors of the fault options, before anything is created. */
export function checkFaultOptions(opts: FederationFaults & Pick<SimulateOptions, 'rounds' | 'sites'>): void {
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
}

export interface RoundsSeen {
  open: RoundRow | undefined;
  done: ReadonlyMap<number, RoundRow>;
  /** How long the live output has seen round row `rowId` open (ms). */
  openFor(rowId: number): number;
}

export class FaultInjector {
  readonly injected: SimulationReport['injected'] = {};
  private dropDone = false;
  /** The round after which the dropped site restarts, while it is down. */
  private rejoinAfterRound: number | null = null;
  private restartDone = false;

  constructor(
    private readonly faults: FederationFaults,
    private readonly federation: SimulatedFederation,
    private readonly records: CoordinatorRecords,
    private readonly coordinatorUrl: string,
    private readonly roundDeadlineSeconds: number,
    private readonly out: (text: string) => void,
  ) {}

  /** A dropped site is down on purpose: the federation is not dead while it waits to rejoin. */
  get waitingForRejoin(): boolean {
    return this.rejoinAfterRound !== null;
  }

  /** One poll's worth of fault injection. */
  async step(seen: RoundsSeen): Promise<void> {
    await this.dropSiteIfDue(seen);
    this.rejoinIfDue(seen);
    await this.restartCoordinatorIfDue(seen);
    this.reportMissedFaults(seen);
  }

  private async dropSiteIfDue({ open, openFor }: RoundsSeen): Promise<void> {
    const drop = this.faults.drop;
    if (!drop || this.dropDone || !open || open.round !== drop.round || !(openFor(open.id) > INJECT_AFTER_MS)) return;
    if (this.federation.hasSite(drop.siteId) && !open.updates.some((u) => u.siteId === drop.siteId)) {
      this.out(
        `! dropping ${drop.siteId} out of round ${open.round}: SIGKILL to its process (the round goes on with the other sites and closes once they are done and it has stayed away a while, or at the ${this.roundDeadlineSeconds} s deadline)`,
      );
      this.injected.dropSite = { ...drop, killedAt: new Date().toISOString() };
      await this.federation.killSite(drop.siteId);
      this.rejoinAfterRound = open.round;
    } else {
      this.out(`! ${drop.siteId} had already sent its update for round ${open.round}; not dropped (use more --steps)`);
    }
    this.dropDone = true;
  }

  private rejoinIfDue({ done }: RoundsSeen): void {
    const drop = this.faults.drop;
    if (!drop || this.rejoinAfterRound === null || !done.has(this.rejoinAfterRound)) return;
    this.out(`  ${drop.siteId} restarts and rejoins (it receives the latest checkpoint)`);
    this.federation.startSite(drop.siteId);
    this.rejoinAfterRound = null;
  }

  private async restartCoordinatorIfDue({ open, openFor }: RoundsSeen): Promise<void> {
    const at = this.faults.restartCoordinatorAt;
    if (!at || this.restartDone || !open || open.round !== at || !(openFor(open.id) > INJECT_AFTER_MS)) return;
    this.restartDone = true;
    this.out(`! killing the coordinator (SIGKILL) in the middle of round ${open.round}, then restarting it on the same state directory…`);
    this.injected.coordinatorRestart = { round: open.round, killedAt: new Date().toISOString() };
    await this.federation.killCoordinator();
    this.records.close();
    await this.federation.startCoordinator();
    const h = await health(this.coordinatorUrl);
    this.out(`  coordinator restarted: resumes after round ${h?.lastCompletedRound ?? '?'}; sites reconnect with backoff`);
  }

  /** A round can finish before the poll sees it running (very few --steps). */
  private reportMissedFaults({ done }: RoundsSeen): void {
    const { drop, restartCoordinatorAt } = this.faults;
    if (drop && !this.dropDone && done.has(drop.round)) {
      this.dropDone = true;
      this.out(`! round ${drop.round} finished before ${drop.siteId} could be dropped out of it; use more --steps`);
    }
    if (restartCoordinatorAt && !this.restartDone && done.has(restartCoordinatorAt)) {
      this.restartDone = true;
      this.out(`! round ${restartCoordinatorAt} finished before the coordinator could be killed in it; use more --steps`);
    }
  }
}
