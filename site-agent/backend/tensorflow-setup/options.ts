/**
 * What `patchfed setup tensorflow [--gpu]` installs and where: the pinned TensorFlow wheel the C
 * library comes from, the tfjs package whose binding is built against it, and the cache that
 * keeps the extracted library outside the checkout (so re-running setup after `npm ci` wiped
 * node_modules needs no download).
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { PatchFedError } from '../../../shared/errors.ts';
import { TFJS_NODE_PACKAGES, type TfjsNodePackage } from '../tfjs-node-package.ts';

/** The TensorFlow release the setup was verified with (tfjs-node 4.22.0 builds against its C API). */
export const DEFAULT_TENSORFLOW_VERSION = '2.21.0';

export type SetupVariant = 'cpu' | 'gpu';

export interface SetupOptions {
  variant: SetupVariant;
  /** TensorFlow version of the wheel (pip's `==` pin). */
  tensorflowVersion: string;
  /** Cache root (wheels and extracted libraries); outside the checkout. */
  cacheDir: string;
  /** Rebuild even when the package is already set up for this version. */
  force: boolean;
}

export interface Variant {
  variant: SetupVariant;
  /** The tfjs package whose binding is built. */
  packageName: TfjsNodePackage;
  /**
   * The pip distribution holding the C library: the CPU-only wheel, or the standard wheel, which
   * on Linux x86_64 is the CUDA build and expects CUDA 12 / cuDNN from nvidia-* pip packages.
   */
  distribution: 'tensorflow-cpu' | 'tensorflow';
}

export function variantOf(variant: SetupVariant): Variant {
  return variant === 'gpu'
    ? { variant, packageName: TFJS_NODE_PACKAGES.gpu, distribution: 'tensorflow' }
    : { variant, packageName: TFJS_NODE_PACKAGES.cpu, distribution: 'tensorflow-cpu' };
}

/** A release version pip can pin with `==` (2.21.0, 2.20.0rc1, 2.19.1.post1); anything else is refused. */
export function parseTensorflowVersion(value: string): string {
  const v = value.trim();
  if (!/^\d+\.\d+(\.\d+)?((a|b|rc)\d+)?(\.post\d+)?$/.test(v)) {
    throw new PatchFedError('tensorflow-setup-usage', `--tf-version must be a TensorFlow release such as ${DEFAULT_TENSORFLOW_VERSION}, got '${value}'.`, { subject: '--tf-version' });
  }
  return v;
}

/** --cache-dir, else $PATCHFED_CACHE_DIR, else $XDG_CACHE_HOME/patchfed, else ~/.cache/patchfed. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  if (env.PATCHFED_CACHE_DIR) return path.resolve(env.PATCHFED_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return path.join(path.resolve(env.XDG_CACHE_HOME), 'patchfed');
  return path.join(home, '.cache', 'patchfed');
}

/**
 * The cache must not be inside the checkout: the extracted library is ~0.6 GB (GPU: several GB)
 * and must never be committed. A folder under node_modules/ is fine (git ignores it, npm ci
 * removes it).
 */
export function assertCacheOutsideCheckout(cacheDir: string, checkoutDir: string): void {
  const rel = path.relative(checkoutDir, cacheDir);
  const inside = rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
  if (inside && rel.split(path.sep)[0] !== 'node_modules') {
    throw new PatchFedError(
      'tensorflow-setup-usage',
      `--cache-dir ${cacheDir} is inside the checkout ${checkoutDir}; use a folder outside it (default ~/.cache/patchfed) so the ~1 GB TensorFlow files never end up in the repository.`,
      { subject: '--cache-dir' },
    );
  }
}

/** Folder of one extracted wheel in the cache, e.g. <cache>/tensorflow-cpu-2.21.0. */
export function extractedDir(cacheDir: string, v: Variant, tensorflowVersion: string): string {
  return path.join(cacheDir, `${v.distribution}-${tensorflowVersion}`);
}

/** Where pip downloads wheels (deleted after a successful extraction). */
export function wheelsDir(cacheDir: string): string {
  return path.join(cacheDir, 'wheels');
}

/** Build logs, one per variant, kept after the build. */
export function buildLogPath(cacheDir: string, v: Variant): string {
  return path.join(cacheDir, 'logs', `build-${v.packageName.replace('@tensorflow/', '')}.log`);
}
