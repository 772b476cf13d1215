/**
 * The compute backends PatchFed can run on, as a small table of loaders. Each loader imports
 * its package only when asked (all but the stock cpu backend are optional) and reports why it
 * is unavailable instead of throwing, so selection can fall through to the next one.
 */
import { version_cpu } from '@tensorflow/tfjs-backend-cpu';
import path from 'node:path';
import { errorMessage } from '../../shared/errors.ts';
import { tfjsNodeCandidate } from './tfjs-node-candidate.ts';
import { findPackageDir } from './tfjs-node-package.ts';

export { prepareGpuEnvironment, prepareTensorflowEnvironment, visibleCudaDevices } from './tensorflow-environment.ts';

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu' | 'cpu-fast';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast'];

export interface LoadedBackend {
  /** Name registered with tf (what tf.getBackend() will return). */
  backendName: string;
  packageName: string;
  version: string;
  gpu: boolean;
  notes: string[];
  /** TF_Version of the TensorFlow C library ('tensorflow' backend only). */
  tensorflowVersion?: string | null;
}

export type CandidateResult = { ok: true; backend: LoadedBackend } | { ok: false; reason: string };

export interface BackendCandidate {
  /** Short id used in notes, e.g. "tfjs-node-gpu". */
  id: string;
  load(): Promise<CandidateResult>;
}

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

export const TFJS_NODE_GPU: BackendCandidate = tfjsNodeCandidate('@tensorflow/tfjs-node-gpu');
export const TFJS_NODE: BackendCandidate = tfjsNodeCandidate('@tensorflow/tfjs-node');

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
