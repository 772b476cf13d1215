/**
 * Shared by the tensorflow-backend tests (test/tensorflow-*.test.ts): whether the backend is set
 * up (`npx patchfed setup tensorflow`), and the CI rule — with CI set (.ci/run runs the setup)
 * a missing backend FAILS these tests; on a developer machine without it they skip, saying why.
 * Availability is decided from the files alone (the binding exists), without loading TensorFlow.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import '../site-agent/backend/gradients/index.ts';
import { isCI } from '../site-agent/kernels/build-guard.ts';
import { bindingPath, findPackageDir, setupCommand, TFJS_NODE_PACKAGES } from '../site-agent/backend/tfjs-node-package.ts';
import type { BackendReport } from '../site-agent/backend/select.ts';

export type TensorflowVerdict =
  | { status: 'available'; message: string }
  | { status: 'missing-in-ci'; message: string }
  | { status: 'missing-allowed'; message: string };

/** Why the CPU 'tensorflow' backend cannot load here, or null when its binding is built. */
export function tensorflowMissingReason(find: (name: string) => string | null = findPackageDir): string | null {
  const pkg = TFJS_NODE_PACKAGES.cpu;
  const dir = find(pkg);
  if (dir === null) return `${pkg} is not installed (npm dropped the optional dependency)`;
  const binding = bindingPath(dir);
  if (!existsSync(binding)) return `${pkg} has no native binding (${path.relative(dir, binding)}); run '${setupCommand(pkg)}'`;
  return null;
}

export function tensorflowVerdict(reason: string | null, env: NodeJS.ProcessEnv = process.env): TensorflowVerdict {
  if (reason === null) return { status: 'available', message: 'tensorflow backend set up' };
  if (isCI(env)) {
    return {
      status: 'missing-in-ci',
      message: `CI=${env.CI} but the tensorflow backend is unavailable (${reason}); .ci/run must run 'npx patchfed setup tensorflow' after npm ci, and CI must test this backend, not skip it.`,
    };
  }
  return { status: 'missing-allowed', message: `tensorflow backend unavailable (${reason}); CI is not set, so its tests are skipped` };
}

const VERDICT = tensorflowVerdict(tensorflowMissingReason());
if (VERDICT.status === 'missing-allowed') console.warn(`[tensorflow tests] skipped: ${VERDICT.message}`);

/**
 * First line of every tensorflow-backend test: skips (locally) or fails (CI) when the backend is
 * missing. `ctx` is the vitest test context.
 */
export function requireTensorflow(ctx: { skip: (note?: string) => void }): void {
  if (VERDICT.status === 'missing-allowed') ctx.skip(VERDICT.message);
  expect(VERDICT.status, VERDICT.message).toBe('available');
}

/** Selects 'tensorflow' the way the CLI does (loads tfjs-node, self-check) and leaves it active. */
export async function useTensorflowBackend(): Promise<BackendReport> {
  const { selectBackend } = await import('../site-agent/backend/select.ts');
  const report = await selectBackend('tensorflow');
  expect(tf.getBackend()).toBe('tensorflow');
  return report;
}

/** The backend-side handle count ('tensorflow': TFE tensor handles tfjs-node holds), next to tf.memory().numTensors. */
export function backendDataIds(): number {
  return tf.engine().backend.numDataIds();
}
