/**
 * Weights read as a stream of value runs, tensor by tensor, without holding a decoded copy: the
 * form in which an aggregator consumes a validated update, whether it sits in memory (tests, the
 * site side) or in a spool file on the coordinator's disk (an upload). Reading a file goes
 * through the one PFW parser with a fixed-size buffer, so memory stays O(buffer), not O(model).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PatchFedError } from '../errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../weights.ts';
import { checkManifestMatches } from './manifest.ts';
import { WeightsStreamParser } from './weights-stream.ts';

export type RunVisitor = (tensor: number, offset: number, run: Float32Array) => void;

export interface WeightRuns {
  readonly manifest: readonly WeightSpec[];
  /** Visits every value once, in manifest order; each run is valid only during its call. */
  forEachRun(visit: RunVisitor): Promise<void>;
  /**
   * File-backed runs only: hands the file over to the caller, for aggregators that need every
   * update at once (coordinate-wise median). The file moves into `directory` (default: a
   * `retained/` directory beside it), so whoever spooled it no longer deletes it; returns the new
   * path, which forEachRun reads from now on. The caller deletes the file when done.
   */
  retain?(directory?: string): Promise<string>;
}

/** Where retain() moves a spool file by default, beside it (the coordinator's uploads directory is wiped at start). */
export const RETAINED_DIR = 'retained';

export function inMemoryRuns(weights: NamedWeights): WeightRuns {
  return {
    manifest: weights.manifest,
    forEachRun: async (visit) => {
      weights.values.forEach((v, t) => visit(t, 0, v));
    },
  };
}

const READ_BUFFER_BYTES = 1024 * 1024;

/**
 * A PFW file whose manifest is known to be `manifest` (checked again while reading, cheaply: the
 * values were inspected when the file was written). Every pass reads the file once.
 */
export function fileRuns(path: string, manifest: readonly WeightSpec[], source: string): WeightRuns {
  let current = path;
  return {
    manifest,
    retain: async (directory = join(dirname(path), RETAINED_DIR)) => {
      const target = join(directory, `${basename(path)}-${randomUUID()}.pfw`);
      try {
        await mkdir(directory, { recursive: true });
        await rename(current, target);
      } catch (e) {
        throw new PatchFedError('spool-unreadable', `${source}: cannot keep ${current} for aggregation: ${(e as Error).message}`, { subject: current, cause: e });
      }
      current = target;
      return target;
    },
    forEachRun: async (visit) => {
      const parser = new WeightsStreamParser(
        {
          manifest: (m) => checkManifestMatches(manifest, m, source),
          values: visit,
        },
        { source },
      );
      const file = await open(current, 'r').catch((e: unknown) => {
        throw new PatchFedError('spool-unreadable', `${source}: cannot open ${current}: ${(e as Error).message}`, { subject: current, cause: e });
      });
      try {
        const buffer = new Uint8Array(READ_BUFFER_BYTES);
        for (;;) {
          const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
          if (bytesRead === 0) break;
          parser.push(buffer.subarray(0, bytesRead));
        }
        parser.finish();
      } finally {
        await file.close();
      }
    },
  };
}

/** Collects streamed runs into whole tensors (tests, small models, the site side). */
export function collectRuns(manifest: readonly WeightSpec[]): { sink: RunVisitor; weights: NamedWeights } {
  const weights: NamedWeights = { manifest: manifest.map((s) => ({ ...s, shape: [...s.shape] })), values: manifest.map((s) => new Float32Array(sizeOf(s.shape))) };
  return {
    weights,
    sink: (tensor, offset, run) => {
      const target = weights.values[tensor];
      if (!target || offset + run.length > target.length) throw new PatchFedError('weights-write-out-of-range', `No room for values ${offset}..${offset + run.length} in tensor #${tensor}.`);
      target.set(run, offset);
    },
  };
}
