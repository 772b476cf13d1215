/**
 * The 'tensorflow' backend candidates: @tensorflow/tfjs-node (CPU) and @tensorflow/tfjs-node-gpu.
 * npm installs their JavaScript without running their install scripts (package.json allowScripts:
 * the stock script downloads libtensorflow from a host many sites cannot reach), so the native
 * binding exists only after `patchfed setup tensorflow [--gpu]`. The binding is checked *before*
 * importing the package: a failed import has already registered ~200 kernels, and the next
 * package's import would re-register them all with a warning each.
 * PATCHFED_TENSORFLOW=0 makes both unavailable (A/B runs; keeps `auto` on the CPU kernels).
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { errorMessage } from '../../shared/errors.ts';
import type { BackendCandidate, CandidateResult } from './candidates.ts';
import { prepareGpuEnvironment, prepareTensorflowEnvironment, visibleCudaDevices } from './tensorflow-environment.ts';
import { bindingPath, findPackageDir, packageVersion, setupCommand, TFJS_NODE_PACKAGES, type TfjsNodePackage } from './tfjs-node-package.ts';

export interface TfjsNodeDeps {
  findPackageDir(packageName: string): string | null;
  bindingPath(packageDir: string): string;
  bindingExists(file: string): boolean;
  importPackage(packageName: string): Promise<unknown>;
  /** TF_Version of the loaded binding (the TensorFlow C library's version). */
  tensorflowVersion(bindingFile: string): string | null;
  env: NodeJS.ProcessEnv;
  gpuDevices(env: NodeJS.ProcessEnv): { visible: boolean; detail: string };
}

const defaultDeps: TfjsNodeDeps = {
  findPackageDir,
  bindingPath,
  bindingExists: existsSync,
  importPackage: (name) => import(name),
  tensorflowVersion: (file) => {
    // tfjs-node has already loaded this file; require returns the same module object.
    const binding = createRequire(import.meta.url)(file) as { TF_Version?: unknown };
    return typeof binding.TF_Version === 'string' ? binding.TF_Version : null;
  },
  env: process.env,
  gpuDevices: (env) => visibleCudaDevices(env),
};

export function tfjsNodeCandidate(packageName: TfjsNodePackage, deps: TfjsNodeDeps = defaultDeps): BackendCandidate {
  const gpuPackage = packageName === TFJS_NODE_PACKAGES.gpu;
  return {
    id: gpuPackage ? 'tfjs-node-gpu' : 'tfjs-node',
    async load(): Promise<CandidateResult> {
      if (deps.env.PATCHFED_TENSORFLOW === '0') return { ok: false, reason: 'disabled by PATCHFED_TENSORFLOW=0' };
      const packageDir = deps.findPackageDir(packageName);
      if (packageDir === null) return { ok: false, reason: `${packageName} is not installed (optional dependency)` };
      let binding: string;
      try {
        binding = deps.bindingPath(packageDir);
      } catch (e) {
        return { ok: false, reason: `${packageName} is installed but its binding cannot be located: ${errorMessage(e)}` };
      }
      if (!deps.bindingExists(binding)) {
        return {
          ok: false,
          reason: `${packageName} is installed without its native binding (no ${path.relative(packageDir, binding)}); build it with '${setupCommand(packageName)}'`,
        };
      }
      const notes = prepareTensorflowEnvironment(deps.env);
      if (gpuPackage) notes.push(prepareGpuEnvironment(deps.env));
      try {
        await deps.importPackage(packageName);
      } catch (e) {
        return { ok: false, reason: `${packageName} is installed but failed to load (re-run '${setupCommand(packageName)}'): ${errorMessage(e)}` };
      }
      if (tf.findBackendFactory('tensorflow') == null) {
        return { ok: false, reason: `${packageName} loaded but did not register the 'tensorflow' backend` };
      }
      let tensorflowVersion: string | null = null;
      try {
        tensorflowVersion = deps.tensorflowVersion(binding);
      } catch {
        // The version is informative; the backend works without it.
      }
      let gpu = false;
      if (gpuPackage) {
        const devices = deps.gpuDevices(deps.env);
        notes.push(devices.detail);
        gpu = devices.visible;
      }
      const version = packageVersion(packageDir);
      return {
        ok: true,
        backend: {
          backendName: 'tensorflow',
          packageName,
          // Printed as "<package> <version>" wherever the backend is reported.
          version: tensorflowVersion ? `${version} on TensorFlow ${tensorflowVersion}` : version,
          gpu,
          notes,
          tensorflowVersion,
        },
      };
    },
  };
}
