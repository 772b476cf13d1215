/**
 * The environment TensorFlow (the 'tensorflow' backend) reads when it initialises, so it must be
 * set before tfjs-node loads, and whether a CUDA device is visible at all (GPU build).
 * Imports no tfjs: `patchfed setup tensorflow` uses it for its smoke test's child process.
 */
import { existsSync, readdirSync } from 'node:fs';

/**
 * Settings for both builds; a value the user set is kept. Returns a note for each one set.
 * - TF_ENABLE_ONEDNN_OPTS=1: oneDNN's CPU kernels (Conv3D backprop-filter ×6, a cpu-small U-Net
 *   step ×2.5 faster here than TensorFlow's default Eigen kernels; the gradient self-check still
 *   guards correctness).
 * - TF_CPP_MIN_LOG_LEVEL=1: no INFO lines from TensorFlow's C++ logging on stderr (warnings stay).
 */
export function prepareTensorflowEnvironment(env: NodeJS.ProcessEnv): string[] {
  const notes: string[] = [];
  if (env.TF_ENABLE_ONEDNN_OPTS === undefined) {
    env.TF_ENABLE_ONEDNN_OPTS = '1';
    notes.push('set TF_ENABLE_ONEDNN_OPTS=1 (oneDNN CPU kernels)');
  }
  if (env.TF_CPP_MIN_LOG_LEVEL === undefined) env.TF_CPP_MIN_LOG_LEVEL = '1';
  return notes;
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
