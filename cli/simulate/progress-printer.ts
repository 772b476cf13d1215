/**
 * The simulation's live output, read from the coordinator's records on each poll: sites coming
 * online with their plan, what went wrong as it happens (not only in the logs), rounds opening,
 * and a block per completed round. Each thing is printed once.
 */
import { CoordinatorRecords, type RoundRow } from './coordinator-records.ts';
import type { SimulateOptions } from './options.ts';
import { completedRounds } from './report.ts';
import { formatRoundBlock } from './table.ts';

/** Coordinator events printed in the live output: a site declining a round, storage trouble, operator actions. */
const LIVE_EVENT_KINDS = ['round-declined', 'round-failed', 'health', 'experiment-resumed', 'state-repaired'] as const;

export class RoundProgressPrinter {
  private readonly printed = new Set<number>();
  private readonly announcedSites = new Set<string>();
  /** Round row id → when the printer first saw it open (ms). */
  private readonly seenOpen = new Map<number, number>();
  private lastEventId = 0;

  constructor(
    private readonly records: CoordinatorRecords,
    private readonly opts: Pick<SimulateOptions, 'rounds' | 'steps'>,
    private readonly labels: string[],
    private readonly out: (text: string) => void,
  ) {}

  /** How long ago the printer first saw round row `rowId` open (ms); 0 when it never did. */
  openFor(rowId: number): number {
    const since = this.seenOpen.get(rowId);
    return since === undefined ? 0 : Date.now() - since;
  }

  /** Prints what is new in the coordinator's records; returns the round rows it read. */
  print(): RoundRow[] {
    const rows = this.records.rounds();
    this.printSitesOnline();
    this.printLiveEvents();
    const done = completedRounds(rows);
    for (const row of rows) {
      if (row.status === 'open' && !this.seenOpen.has(row.id)) {
        this.seenOpen.set(row.id, Date.now());
        this.out(`\nround ${row.round}/${this.opts.rounds}${row.attempt > 1 ? ` (attempt ${row.attempt})` : ''} started: ${row.selected.join(', ')} training ${this.opts.steps} steps…`);
      }
      if (row.status === 'complete' && row.round >= 1 && !this.printed.has(row.round)) {
        this.printed.add(row.round);
        const input = done.get(row.round - 1)?.checkpointVersion ?? null;
        if (input) this.records.checkpoint(input);
        const info = row.checkpointVersion ? this.records.checkpoint(row.checkpointVersion) : null;
        this.out(formatRoundBlock(row, this.opts.rounds, this.labels, input, info?.sha256 ?? null));
      }
    }
    return rows;
  }

  private printSitesOnline(): void {
    for (const site of this.records.sites()) {
      if (this.announcedSites.has(site.id) || !site.plannedPatch) continue;
      this.announcedSites.add(site.id);
      this.out(`  ${site.id} online: ${site.backend ?? '?'} backend, budget ${site.memoryBudgetMB ?? '?'} MB → planned patch ${site.plannedPatch.join('×')} batch ${site.plannedBatch ?? '?'}`);
    }
  }

  private printLiveEvents(): void {
    for (const e of this.records.events(this.lastEventId, LIVE_EVENT_KINDS)) {
      this.lastEventId = e.id;
      this.out(`  ! ${e.message}`);
    }
  }
}
