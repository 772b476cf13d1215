/**
 * The compute backends PatchFed can run on, as a small table of loaders. Each loader imports
 * its package only when asked (all but the stock cpu backend are optional) and reports why it
 * is unavailable instead of throwing, so selection can fall through to the next one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { version_cpu } from '@tensorflow/tfjs-backend-cpu';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { errorMessage } from '../../shared/errors.ts';

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu' | 'cpu-fast';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast'];

export interface LoadedBackend {
  /** Name registered with tf (what tf.getBackend() will return). */
  backendName: string;
  packageName: string;
  version: string;
  gpu: boolean;
  notes: string[];
}

export type CandidateResult = { ok: true; backend: LoadedBackend } | { ok: false; reason: string };

export interface BackendCandidate {
  /** Short id used in notes, e.g. "tfjs-node-gpu". */
  id: string;
  load(): Promise<CandidateResult>;
}

const require = createRequire(import.meta.url);

/** Which candidates each choice tries, in order. wasm is never automatic: its Conv3D gradients are wrong. */
export function defaultCandidates(choice: BackendChoice): BackendCandidate[] {
  switch (choice) {
    case 'auto':
      return [TFJS_NODE_GPU, TFJS_NODE, FAST_CPU, STOCK_CPU];
    case 'tensorflow':
      return [TFJS_NODE_GPU, TFJS_NODE];
    case 'cpu-fast':
      return [FAST_CPU, STOCK_CPU];
    case 'cpu':
      return [STOCK_CPU];
    case 'wasm':
      return [WASM];
  }
}

export const STOCK_CPU: BackendCandidate = {
  id: 'cpu',
  async load() {
    // Registered by the static import above.
    return { ok: true, backend: { backendName: 'cpu', packageName: '@tensorflow/tfjs-backend-cpu', version: version_cpu, gpu: false, notes: [] } };
  },
};

/** What site-agent/kernels/index.ts exports (built separately; may be absent). */
export type KernelsModule = {
  registerFastCpuBackend?: () => Promise<{ backendName: string; notice?: string } | null>;
  /** Why the native addon is unavailable (null when it loads). */
  nativeKernelsNotice?: () => string | null;
};

/** The patched cpu backend; `importKernels` is replaceable so tests can simulate each failure. */
export function fastCpuCandidate(importKernels: () => Promise<KernelsModule>): BackendCandidate {
  return {
    id: 'cpu-fast',
    async load() {
      let mod: KernelsModule;
      try {
        mod = await importKernels();
      } catch (e) {
        return { ok: false, reason: `fast cpu kernels (site-agent/kernels) could not be loaded: ${errorMessage(e)}` };
      }
      if (typeof mod.registerFastCpuBackend !== 'function') {
        return { ok: false, reason: 'site-agent/kernels does not export registerFastCpuBackend()' };
      }
      let registered: { backendName: string; notice?: string } | null;
      try {
        registered = await mod.registerFastCpuBackend();
      } catch (e) {
        return { ok: false, reason: `fast cpu kernels failed to register: ${errorMessage(e)}` };
      }
      if (registered === null) {
        const why = typeof mod.nativeKernelsNotice === 'function' ? mod.nativeKernelsNotice() : null;
        return { ok: false, reason: why ?? 'fast cpu kernels are unavailable (their native code is not built for this machine)' };
      }
      const notes = registered.notice ? [registered.notice] : [];
      return {
        ok: true,
        backend: { backendName: registered.backendName, packageName: 'site-agent/kernels (patched @tensorflow/tfjs-backend-cpu)', version: version_cpu, gpu: false, notes },
      };
    },
  };
}

// A variable specifier keeps tsc from requiring the module to exist.
const KERNELS_MODULE = '../kernels/index.ts';
export const FAST_CPU: BackendCandidate = fastCpuCandidate(() => import(KERNELS_MODULE) as Promise<KernelsModule>);

export const TFJS_NODE_GPU: BackendCandidate = { id: 'tfjs-node-gpu', load: () => loadTfjsNode('@tensorflow/tfjs-node-gpu') };
export const TFJS_NODE: BackendCandidate = { id: 'tfjs-node', load: () => loadTfjsNode('@tensorflow/tfjs-node') };

async function loadTfjsNode(packageName: '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu'): Promise<CandidateResult> {
  const packageDir = findPackageDir(packageName);
  if (packageDir === null) return { ok: false, reason: `${packageName} is not installed (optional dependency)` };
  const gpuPackage = packageName === '@tensorflow/tfjs-node-gpu';
  const notes: string[] = [];
  if (gpuPackage) notes.push(prepareGpuEnvironment(process.env));
  try {
    await import(packageName);
  } catch (e) {
    return { ok: false, reason: `${packageName} is installed but failed to load: ${errorMessage(e)}` };
  }
  if (tf.findBackendFactory('tensorflow') == null) {
    return { ok: false, reason: `${packageName} loaded but did not register the 'tensorflow' backend` };
  }
  let gpu = false;
  if (gpuPackage) {
    const devices = visibleCudaDevices();
    notes.push(devices.detail);
    gpu = devices.visible;
  }
  return { ok: true, backend: { backendName: 'tensorflow', packageName, version: packageVersion(packageDir), gpu, notes } };
}

/**
 * Must run before TensorFlow initialises: without allow-growth it reserves nearly all GPU memory
 * up front. A value the user set is kept. Returns a note for the report.
 */
export function prepareGpuEnvironment(env: NodeJS.ProcessEnv): string {
  if (env.TF_FORCE_GPU_ALLOW_GROWTH === undefined) {
    env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
    return 'set TF_FORCE_GPU_ALLOW_GROWTH=true (GPU memory is allocated as needed)';
  }
  return `TF_FORCE_GPU_ALLOW_GROWTH=${env.TF_FORCE_GPU_ALLOW_GROWTH} (kept from the environment)`;
}

/**
 * Whether a CUDA device is visible to TensorFlow: CUDA_VISIBLE_DEVICES can hide all of them
 * ('' or '-1'), and without an NVIDIA driver there is none (TensorFlow then runs on the CPU).
 */
export function visibleCudaDevices(env: NodeJS.ProcessEnv = process.env, deviceCount = nvidiaDeviceCount): { visible: boolean; detail: string } {
  const setting = env.CUDA_VISIBLE_DEVICES;
  if (setting !== undefined && (setting.trim() === '' || setting.trim() === '-1')) {
    return { visible: false, detail: `CUDA_VISIBLE_DEVICES='${setting}' hides every GPU: TensorFlow runs on the CPU` };
  }
  const driverDevices = deviceCount();
  if (driverDevices === 0) {
    return { visible: false, detail: 'no NVIDIA driver or device found: TensorFlow runs on the CPU' };
  }
  const which = setting === undefined ? 'CUDA_VISIBLE_DEVICES unset (all devices visible)' : `CUDA_VISIBLE_DEVICES=${setting}`;
  return { visible: true, detail: `${driverDevices} NVIDIA device(s) found; ${which}` };
}

function nvidiaDeviceCount(): number {
  try {
    const dir = '/proc/driver/nvidia/gpus';
    if (existsSync(dir)) return readdirSync(dir).length;
    return existsSync('/dev/nvidia0') ? 1 : 0;
  } catch {
    return 0;
  }
}

export const WASM: BackendCandidate = {
  id: 'wasm',
  async load() {
    try {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      // In Node the .wasm binaries must be located explicitly: they sit in the package's dist/.
      const dir = findPackageDir('@tensorflow/tfjs-backend-wasm');
      if (dir === null) return { ok: false, reason: '@tensorflow/tfjs-backend-wasm is not installed' };
      wasm.setWasmPaths(path.join(dir, 'dist') + path.sep);
      return {
        ok: true,
        backend: {
          backendName: 'wasm',
          packageName: '@tensorflow/tfjs-backend-wasm',
          version: wasm.version_wasm,
          gpu: false,
          notes: ['wasm is for inference only: its Conv3D gradients are wrong, so training refuses it'],
        },
      };
    } catch (e) {
      return { ok: false, reason: `@tensorflow/tfjs-backend-wasm failed to load: ${errorMessage(e)}` };
    }
  },
};

function findPackageDir(packageName: string): string | null {
  try {
    return path.dirname(require.resolve(`${packageName}/package.json`));
  } catch {
    // Packages with an "exports" map may hide package.json; resolve the entry and walk up.
    try {
      let dir = path.dirname(require.resolve(packageName));
      while (dir !== path.dirname(dir)) {
        const pj = path.join(dir, 'package.json');
        if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === packageName) return dir;
        dir = path.dirname(dir);
      }
    } catch {
      // not installed
    }
    return null;
  }
}

function packageVersion(dir: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
