/**
 * Progress over the cases of a folder: a bar on a terminal (stderr), redrawn under each per-case
 * line (stdout), and plain throttled lines when stderr is not a terminal (logs, CI). The same
 * conventions as training's progress (site-agent/train/progress.ts), counting cases instead of
 * steps and with no loss to show.
 */
export interface LineStream {
  isTTY?: boolean;
  write(s: string): unknown;
}

function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export function formatCaseProgress(label: string, done: number, total: number, elapsedMs: number, width = 24): string {
  const frac = total > 0 ? done / total : 1;
  const filled = Math.round(frac * width);
  const eta = done > 0 ? (elapsedMs / done) * (total - done) : Infinity;
  return `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} cases ETA ${formatDuration(eta)}`;
}

export class CaseProgress {
  private done = 0;
  private readonly t0 = Date.now();
  private lastPlain = 0;
  private barShown = false;

  constructor(
    private readonly total: number,
    private readonly out: LineStream = process.stdout,
    private readonly err: LineStream = process.stderr,
    private readonly label = 'predict',
    private readonly plainIntervalMs = 10_000,
  ) {}

  /** Draws the bar before the first case. */
  start(): void {
    this.draw();
  }

  /** Prints one case's line (above the bar) and advances the bar. */
  caseDone(line: string): void {
    this.clearBar();
    this.out.write(`${line}\n`);
    this.done++;
    this.draw();
  }

  /** Ends an open bar (after the last case, or on an error) so what follows starts on its own line. */
  close(): void {
    if (this.barShown && this.err.isTTY) this.err.write('\n');
    this.barShown = false;
  }

  private clearBar(): void {
    if (this.barShown && this.err.isTTY) this.err.write('\r\x1b[K');
  }

  private draw(): void {
    const line = formatCaseProgress(this.label, this.done, this.total, Date.now() - this.t0);
    if (this.err.isTTY) {
      this.err.write(`\r${line}\x1b[K`);
      this.barShown = true;
      return;
    }
    const now = Date.now();
    if (this.done === 0 || this.done >= this.total || now - this.lastPlain >= this.plainIntervalMs) {
      this.lastPlain = now;
      this.err.write(`${line}\n`);
    }
  }
}
