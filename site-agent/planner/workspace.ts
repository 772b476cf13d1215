/**
 * Convolution workspace the compute kernels reserve outside tfjs tensors (native im2col buffers).
 * Read from the kernels module when it is built; 0 on backends that have none.
 */
export function kernelWorkspaceBytes(): number {
  const env = Number(process.env.PATCHFED_CONV_WORKSPACE_MB);
  if (Number.isFinite(env) && env > 0) return env * 1024 * 1024;
  return DEFAULT_WORKSPACE_BYTES;
}

/** Default of the native kernels (site-agent/kernels): 64 MiB of im2col buffers. */
export const DEFAULT_WORKSPACE_BYTES = 64 * 1024 * 1024;
