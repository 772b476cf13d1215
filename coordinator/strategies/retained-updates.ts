/**
 * The update files an aggregation keeps until it finishes, for rules that need every update at
 * once (coordinate-wise median, trimmed mean, adaptive clipping). An upload's spool file is taken
 * over with WeightRuns.retain() (a rename, no copy); runs without a file (in memory: tests, tools)
 * are written to a PFW file in a private temporary directory. At finish the files are opened for
 * positional reads, so the aggregator reads the same slice of the model from each of them and
 * never holds an update whole. Every file is deleted when the aggregation ends, whatever its
 * outcome (discard()).
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { endianness, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { WeightsFile, checkManifestMatches, encodeWeightsHead, swapBytes32, type WeightRuns } from '../../shared/codec/index.ts';
import type { WeightSpec } from '../../shared/weights.ts';

const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

export interface RetainedUpdate {
  siteId: string;
  numSamples: number;
  path: string;
}

export class RetainedUpdates {
  private readonly kept: RetainedUpdate[] = [];
  /** Files retained but not (yet) accepted: an add() in flight, or one that failed half-way. */
  private readonly loose = new Set<string>();
  private tempDir: string | null = null;
  private discarded = false;

  constructor(
    private readonly manifest: readonly WeightSpec[],
    private readonly label: string,
  ) {}

  get updates(): readonly RetainedUpdate[] {
    return this.kept;
  }

  /** Takes `update`'s values over as a file; the caller accept()s or forget()s the path. */
  async retain(siteId: string, update: WeightRuns): Promise<string> {
    if (this.discarded) throw this.closed(siteId);
    const path = update.retain ? await update.retain() : await this.spool(siteId, update);
    this.loose.add(path);
    if (this.discarded) {
      this.forget(path);
      throw this.closed(siteId);
    }
    return path;
  }

  accept(entry: RetainedUpdate): void {
    this.loose.delete(entry.path);
    this.kept.push(entry);
  }

  /** Deletes a retained file that will not be aggregated. */
  forget(path: string): void {
    this.loose.delete(path);
    rmSync(path, { force: true });
  }

  /** Opens every accepted file for positional reads (checked against the manifest); the caller closes them. */
  open(): WeightsFile[] {
    const files: WeightsFile[] = [];
    try {
      for (const u of this.kept) {
        const f = new WeightsFile(u.path, `retained update from site '${u.siteId}' (${this.label})`);
        files.push(f);
        checkManifestMatches(this.manifest, f.manifest, f.source);
      }
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
    return files;
  }

  /** Deletes every file; later retain() calls delete what they retained and refuse. */
  discard(): void {
    this.discarded = true;
    for (const u of this.kept) rmSync(u.path, { force: true });
    for (const p of this.loose) rmSync(p, { force: true });
    this.kept.length = 0;
    this.loose.clear();
    if (this.tempDir) rmSync(this.tempDir, { recursive: true, force: true });
    this.tempDir = null;
  }

  private closed(siteId: string): PatchFedError {
    return new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} ended.`, { subject: siteId });
  }

  /** Writes in-memory runs as a PFW file (same bytes an upload's spool file holds). */
  private async spool(siteId: string, update: WeightRuns): Promise<string> {
    this.tempDir ??= mkdtempSync(join(tmpdir(), 'patchfed-retained-'));
    const path = join(this.tempDir, `${this.kept.length + this.loose.size}-${siteId.replace(/[^A-Za-z0-9_.-]/g, '_')}.pfw`);
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, encodeWeightsHead(this.manifest, `update from site '${siteId}'`));
      await update.forEachRun((_tensor, _offset, run) => {
        const bytes = new Uint8Array(run.buffer, run.byteOffset, run.byteLength);
        if (HOST_IS_LITTLE_ENDIAN) writeSync(fd, bytes);
        else {
          const copy = bytes.slice();
          swapBytes32(copy);
          writeSync(fd, copy);
        }
      });
    } catch (e) {
      closeSync(fd);
      rmSync(path, { force: true });
      throw e;
    }
    closeSync(fd);
    return path;
  }
}
