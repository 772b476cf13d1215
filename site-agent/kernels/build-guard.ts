/**
 * Whether a missing native addon is acceptable here. On a developer machine without a compiler
 * it is (training falls back to the stock cpu kernels); in CI it is not: `npm ci` must have built
 * the addon, or the fast kernels' tests would silently skip and prove nothing.
 */
import type { NativeLoadResult } from './native-addon.ts';

export type NativeBuildVerdict =
  | { status: 'built'; message: string }
  | { status: 'missing-in-ci'; message: string }
  | { status: 'missing-allowed'; message: string };

/** CI is "set" unless empty, '0' or 'false' (the values CI providers use to turn it off). */
export function isCI(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.CI?.trim().toLowerCase();
  return value !== undefined && value !== '' && value !== '0' && value !== 'false';
}

export function nativeBuildVerdict(loaded: NativeLoadResult, env: NodeJS.ProcessEnv = process.env): NativeBuildVerdict {
  if (loaded.ok) return { status: 'built', message: `native kernels loaded from ${loaded.path}` };
  if (isCI(env)) {
    return {
      status: 'missing-in-ci',
      message:
        `CI=${env.CI} but the native kernels are unavailable (${loaded.reason}). ` +
        `'npm ci' should have built them (install script: node site-agent/kernels/native/build.mjs; ` +
        `its log is site-agent/kernels/native/build/build.log); CI must test the fast path, not skip it.`,
    };
  }
  return {
    status: 'missing-allowed',
    message: `native kernels unavailable (${loaded.reason}); CI is not set, so their tests are skipped and training uses the stock cpu kernels`,
  };
}
