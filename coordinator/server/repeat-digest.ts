/**
 * Turns a flood of the same thing into one line per interval. The first occurrence of a key is
 * reported in full; later ones within the interval are only counted (with a bounded tally of
 * details such as the client address), and when the interval ends `flush` receives one summary.
 * A continuing flood yields one summary per interval; a quiet key is forgotten, so its next
 * occurrence is reported in full again. Keys must come from a small, fixed set (reasons, codes,
 * enrolled site ids), never from what a client chose.
 */
export interface DigestSummary {
  key: string;
  /** Occurrences not reported in full during the interval. */
  count: number;
  intervalMs: number;
  /** Most frequent details first, at most MAX_DETAILS, e.g. [['10.0.0.7', 912], ['10.0.0.8', 3]]. */
  details: [string, number][];
  /** Occurrences whose detail did not fit in the tally. */
  otherDetails: number;
}

const MAX_DETAILS = 16;

interface Window {
  count: number;
  details: Map<string, number>;
  otherDetails: number;
}

export class RepeatDigest {
  private readonly windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly intervalMs: number,
    private readonly flush: (summary: DigestSummary) => void,
  ) {}

  /** Counts one occurrence; true when it should be reported in full (the first of its interval). */
  note(key: string, detail?: string): boolean {
    const w = this.windows.get(key);
    if (!w) {
      this.windows.set(key, { count: 0, details: new Map(), otherDetails: 0 });
      this.ensureTimer();
      return true;
    }
    w.count++;
    if (detail !== undefined) {
      const n = w.details.get(detail);
      if (n !== undefined) w.details.set(detail, n + 1);
      else if (w.details.size < MAX_DETAILS) w.details.set(detail, 1);
      else w.otherDetails++;
    }
    return false;
  }

  /** Flushes what is pending and stops the timer. */
  close(): void {
    this.tick();
    this.windows.clear();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  private tick(): void {
    for (const [key, w] of this.windows) {
      if (w.count === 0) {
        this.windows.delete(key); // quiet for a whole interval: report the next one in full
        continue;
      }
      const details = [...w.details.entries()].sort((a, b) => b[1] - a[1]);
      this.windows.set(key, { count: 0, details: new Map(), otherDetails: 0 });
      try {
        this.flush({ key, count: w.count, intervalMs: this.intervalMs, details, otherDetails: w.otherDetails });
      } catch {
        // a failing sink must not stop the digest
      }
    }
    if (this.windows.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

/** "912 × 10.0.0.7, 3 × 10.0.0.8 and 5 others" */
export function describeDetails(summary: DigestSummary): string {
  const parts = summary.details.map(([d, n]) => `${n} × ${d}`);
  if (summary.otherDetails > 0) parts.push(`${summary.otherDetails} from others`);
  return parts.join(', ');
}
