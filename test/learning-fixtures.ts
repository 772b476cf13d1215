/** Shared helpers for the learning, trainer and predict tests: backend, phantom datasets, site configs. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../site-agent/backend/gradients/index.ts';
import { registerFastCpuBackend } from '../site-agent/kernels/index.ts';
import { generatePhantomDataset, type PhantomDatasetOptions } from '../site-agent/phantom/index.ts';

/**
 * The native 'cpu-fast' backend when its addon is built (npm install builds it), else stock 'cpu'.
 * Both pass the gradient self-check; results agree to float rounding, so step counts, not
 * backends, decide whether a test learns.
 */
export async function useTrainingBackend(): Promise<string> {
  const fast = await registerFastCpuBackend();
  const name = fast ? fast.backendName : 'cpu';
  await tf.setBackend(name);
  return name;
}

export class TempDirs {
  private readonly dirs: string[] = [];
  async make(prefix = 'patchfed-learn-'): Promise<string> {
    const d = await mkdtemp(path.join(tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }
  async cleanup(): Promise<void> {
    for (const d of this.dirs.splice(0)) await rm(d, { recursive: true, force: true });
  }
}

/** A brain phantom (4 MR channels; edema / non-enhancing / enhancing) in MSD layout under `root`. */
export async function brainPhantom(root: string, opts: Partial<PhantomDatasetOptions> = {}): Promise<string> {
  const out = path.join(root, 'data');
  await generatePhantomDataset({ task: 'brain', cases: 8, testCases: 1, shape: [16, 16, 16], seed: 7, siteStyle: 2, out, ...opts });
  return out;
}

/** Writes a site config for `patchfed train` / runLocalTraining and returns its path. */
export async function writeSiteConfig(root: string, body: Record<string, unknown>): Promise<string> {
  const file = path.join(root, 'site.json');
  await writeFile(file, JSON.stringify({ siteId: 'test-site', memoryBudgetMB: 1024, backend: 'auto', seed: 1, workDir: path.join(root, 'work'), ...body }, null, 2));
  return file;
}
