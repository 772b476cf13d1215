/**
 * Progress for long runs: a one-line bar on a TTY (steps, loss, voxels/s, ETA), plain log lines
 * otherwise (CI logs, the site daemon's log file).
 */
export interface ProgressInfo {
  label: string;
  step: number;
  steps: number;
  loss: number;
  voxelsPerSecond: number;
  elapsedMs: number;
}

function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export function formatProgress(p: ProgressInfo, width = 24): string {
  const frac = p.steps > 0 ? p.step / p.steps : 1;
  const filled = Math.round(frac * width);
  const eta = p.step > 0 ? (p.elapsedMs / p.step) * (p.steps - p.step) : Infinity;
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  const vps = p.voxelsPerSecond >= 1e6 ? `${(p.voxelsPerSecond / 1e6).toFixed(2)}M` : `${(p.voxelsPerSecond / 1e3).toFixed(1)}k`;
  return `${p.label} [${bar}] ${p.step}/${p.steps} loss ${p.loss.toFixed(4)} ${vps} vox/s ETA ${formatDuration(eta)}`;
}

export class ProgressReporter {
  private lastLine = 0;
  /** A TTY bar is on screen without its newline (the run is mid-stage). */
  private lineOpen = false;
  constructor(
    private readonly stream: NodeJS.WriteStream | { isTTY?: boolean; write(s: string): unknown } = process.stderr,
    /** Plain mode: one line every this many ms. */
    private readonly plainIntervalMs = 10_000,
  ) {}

  update(p: ProgressInfo): void {
    const line = formatProgress(p);
    if (this.stream.isTTY) {
      this.stream.write(`\r${line}\x1b[K`);
      this.lineOpen = p.step < p.steps;
      if (!this.lineOpen) this.stream.write('\n');
      return;
    }
    const now = Date.now();
    if (p.step >= p.steps || p.step === 1 || now - this.lastLine >= this.plainIntervalMs) {
      this.lastLine = now;
      this.stream.write(`${line}\n`);
    }
  }

  /** Ends an open bar with a newline (Ctrl-C, an error): what is printed next starts on its own line. */
  close(): void {
    if (!this.lineOpen) return;
    this.lineOpen = false;
    this.stream.write('\n');
  }
}
