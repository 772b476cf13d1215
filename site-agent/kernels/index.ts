/**
 * The 'cpu-fast' tfjs backend: the stock cpu backend (same MathBackendCPU class, every cpu
 * kernel) with the 3D convolution kernels (forward and both backprops), 3D max pooling and the
 * memory-bound float32 kernels a U-Net step spends its remaining time in (broadcast binary ops,
 * reductions, slices/splits/concats, transposes, softmax) replaced by a native, multi-threaded,
 * SIMD addon. The stock 'cpu' backend is left untouched,
 * so both can run side by side in one process (see bench/kernels.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { PatchFedError } from '../../shared/errors.ts';
import { nativeConv3DKernels } from './conv3d-kernels.ts';
import { ELEMENTWISE_KERNEL_NAMES, nativeElementwiseKernels } from './elementwise-kernels.ts';
import { registerConv3DBackpropInputGradient } from './gradients.ts';
import { nativeMaxPool3DKernels } from './maxpool3d-kernels.ts';
import { loadNativeKernels, type NativeConvAddon } from './native-addon.ts';

export const FAST_CPU_BACKEND = 'cpu-fast';

/** Kernels of 'cpu-fast' that do not come from the stock cpu backend. */
export const NATIVE_KERNEL_NAMES: readonly string[] = [
  tf.Conv3D,
  tf.Conv3DBackpropFilterV2,
  tf.Conv3DBackpropInputV2,
  tf.MaxPool3D,
  tf.MaxPool3DGrad,
  ...ELEMENTWISE_KERNEL_NAMES,
];

export interface FastCpuRegistration {
  backendName: string;
  notice?: string;
}

let registration: FastCpuRegistration | null = null;

/**
 * Registers 'cpu-fast' (once per process) and returns its name, or null when the native addon
 * is not available; nativeKernelsNotice() then says why. Does not change the active backend.
 */
export async function registerFastCpuBackend(): Promise<FastCpuRegistration | null> {
  if (registration) return registration;
  const loaded = loadNativeKernels();
  if (!loaded.ok) return null;
  const addon = loaded.addon;

  tf.registerBackend(
    FAST_CPU_BACKEND,
    () => {
      const backend = new MathBackendCPU();
      // The stock backend greets Node users with "install tfjs-node to speed things up".
      (backend as unknown as { firstUse: boolean }).firstUse = false;
      return backend;
    },
    // Below the stock cpu backend (priority 1): selected only explicitly.
    0,
  );
  const overridden = new Set(NATIVE_KERNEL_NAMES);
  for (const config of tf.getKernelsForBackend('cpu')) {
    if (!overridden.has(config.kernelName)) tf.registerKernel({ ...config, backendName: FAST_CPU_BACKEND });
  }
  const stock = (kernelName: string): tf.KernelFunc => {
    const config = tf.getKernel(kernelName, 'cpu');
    if (!config) throw new Error(`stock cpu kernel ${kernelName} is not registered`);
    return config.kernelFunc;
  };
  for (const config of [
    ...nativeConv3DKernels(addon, FAST_CPU_BACKEND, stock),
    ...nativeMaxPool3DKernels(addon, FAST_CPU_BACKEND, stock),
    ...nativeElementwiseKernels(addon, FAST_CPU_BACKEND, stock),
  ]) {
    tf.registerKernel(config);
  }
  registerConv3DBackpropInputGradient();

  registration = { backendName: FAST_CPU_BACKEND };
  return registration;
}

/** One line saying why 'cpu-fast' is unavailable, or null when the addon loads. */
export function nativeKernelsNotice(): string | null {
  const loaded = loadNativeKernels();
  return loaded.ok ? null : `PatchFed: native Conv3D kernels unavailable (${loaded.reason}); training uses the slower stock cpu kernels`;
}

function addonOrNull(): NativeConvAddon | null {
  const loaded = loadNativeKernels();
  return loaded.ok ? loaded.addon : null;
}

/**
 * Bytes the native kernels may hold outside tfjs tensors (packed filters and zero-padded input
 * slices), for the memory planner; 0 without the addon. A single depth slice larger than the
 * limit is still allocated (the limit would otherwise make the convolution impossible).
 */
export function convWorkspaceBytes(): number {
  return addonOrNull()?.workspaceLimit() ?? 0;
}

/** Bytes the native kernels hold right now (the arena is kept between calls). */
export function convWorkspaceReservedBytes(): number {
  return addonOrNull()?.workspaceReserved() ?? 0;
}

/** Caps the native workspace (default 64 MiB or PATCHFED_CONV_WORKSPACE_MB). */
export function setConvWorkspaceMB(megabytes: number): void {
  if (!Number.isFinite(megabytes) || megabytes < 1 || megabytes > 1 << 20) {
    throw new PatchFedError('conv-workspace', `Conv workspace must be between 1 and ${1 << 20} MiB, got ${megabytes}.`, {
      subject: 'PATCHFED_CONV_WORKSPACE_MB',
    });
  }
  addonOrNull()?.setWorkspaceLimit(Math.round(megabytes * 1024 * 1024));
}

/** Threads of the native kernels (default: all cores, or PATCHFED_CONV_THREADS); 0 without the addon. */
export function convThreads(): number {
  return addonOrNull()?.threads() ?? 0;
}

export function setConvThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new PatchFedError('conv-threads', `Conv thread count must be an integer from 1 to 256, got ${threads}.`, {
      subject: 'PATCHFED_CONV_THREADS',
    });
  }
  addonOrNull()?.setThreads(threads);
}
