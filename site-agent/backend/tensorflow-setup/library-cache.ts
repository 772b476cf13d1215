/**
 * The TensorFlow C library in the setup's cache: downloaded once with pip, the members the
 * binding needs extracted (C API headers and the two shared libraries; for --gpu also the
 * NVIDIA CUDA/cuDNN packages' libraries), stripped, and recorded in extracted.json. The folder
 * is built under a temporary name and renamed when complete, so an interrupted setup never
 * leaves a half-extracted library that a later run would trust. The wheels are deleted after
 * extraction: the extracted folder is all a later setup (e.g. after `npm ci`) needs.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../../shared/errors.ts';
import { writeFileAtomic } from '../../model/atomic-file.ts';
import { andCudaRequirements, NVIDIA_EXCLUDE, NVIDIA_RULES } from './cuda-packages.ts';
import { DEFAULT_TENSORFLOW_VERSION, extractedDir, wheelsDir, type SetupOptions, type Variant } from './options.ts';
import { checkDiskSpace, REQUIRED_BYTES, type PreflightDeps } from './preflight.ts';
import { failureLine, type ToolRunner } from './run-tool.ts';
import { extractWheel, pipDownload, readWheelMetadata, type ExtractRule } from './wheel.ts';

/** What tfjs-node's binding.gyp needs from the wheel (without the tsl headers: `fatal error: xla/tsl/c/tsl_status.h`). */
export const TENSORFLOW_RULES: readonly ExtractRule[] = [
  { from: 'tensorflow/include/tensorflow/c/', to: 'include/tensorflow/c/' },
  { from: 'tensorflow/include/tensorflow/core/platform/', to: 'include/tensorflow/core/platform/' },
  { from: 'tensorflow/include/tsl/', to: 'include/tsl/' },
  { from: 'tensorflow/include/xla/tsl/', to: 'include/xla/tsl/' },
  { from: 'tensorflow/libtensorflow_cc.so.2', to: 'lib/libtensorflow_cc.so.2' },
  { from: 'tensorflow/libtensorflow_framework.so.2', to: 'lib/libtensorflow_framework.so.2' },
];

/** Files the build cannot do without; their absence means this wheel does not fit the setup. */
export const REQUIRED_FILES = ['include/tensorflow/c/c_api.h', 'include/tensorflow/c/eager/c_api.h', 'lib/libtensorflow_cc.so.2', 'lib/libtensorflow_framework.so.2'];

export const LIBRARIES = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'];

export interface ExtractedLibrary {
  dir: string;
  distribution: string;
  tensorflowVersion: string;
  wheel: string;
  /** Bytes of the two libraries as cached (after strip when it ran). */
  libraryBytes: number;
  stripped: boolean;
  /** --gpu: the CUDA/cuDNN pip requirements installed, and their library folders relative to the cache folder. */
  cudaRequirements: string[];
  nvidiaLibDirs: string[];
}

const RECORD = 'extracted.json';

/** The cached library for this variant and version, or null when it is not (completely) there. */
export function cachedLibrary(options: SetupOptions, v: Variant): ExtractedLibrary | null {
  const dir = extractedDir(options.cacheDir, v, options.tensorflowVersion);
  const record = path.join(dir, RECORD);
  if (!existsSync(record)) return null;
  try {
    const lib = JSON.parse(readFileSync(record, 'utf8')) as ExtractedLibrary;
    if (lib.distribution !== v.distribution || lib.tensorflowVersion !== options.tensorflowVersion) return null;
    if (!REQUIRED_FILES.every((f) => existsSync(path.join(dir, f)))) return null;
    return { ...lib, dir };
  } catch {
    return null;
  }
}

export interface LibraryDeps {
  python: string;
  run: ToolRunner;
  preflight: PreflightDeps;
  /** `strip` when available (saves ~220 MB of debug sections), else null. */
  strip: string | null;
  log: (line: string) => void;
}

/** The cached library, downloading and extracting it first when needed. */
export function ensureLibrary(options: SetupOptions, v: Variant, deps: LibraryDeps): { library: ExtractedLibrary; cached: boolean } {
  const cached = cachedLibrary(options, v);
  if (cached) return { library: cached, cached: true };

  const { python, run, log } = deps;
  checkDiskSpace(options.cacheDir, REQUIRED_BYTES[v.variant].download, `the ${v.distribution} ${options.tensorflowVersion} download`, deps.preflight);
  const wheels = wheelsDir(options.cacheDir);
  mkdirSync(wheels, { recursive: true });
  const spec = `${v.distribution}==${options.tensorflowVersion}`;
  log(`  downloading ${spec} with pip (${deps.preflight.env.PIP_INDEX_URL ? `index ${deps.preflight.env.PIP_INDEX_URL}` : 'pip\'s configured index'})…`);
  let t0 = Date.now();
  const [wheel] = pipDownload(python, [spec], wheels, run, deps.preflight.env);
  if (wheel === undefined) throw new Error('pip returned no wheel');
  log(`  ${path.basename(wheel)} (${mb(statSync(wheel).size)}) in ${seconds(t0)}`);

  const finalDir = extractedDir(options.cacheDir, v, options.tensorflowVersion);
  const tmp = `${finalDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const downloaded = [wheel];
  try {
    t0 = Date.now();
    extractWheel(python, wheel, tmp, TENSORFLOW_RULES, run);
    const missing = REQUIRED_FILES.filter((f) => !existsSync(path.join(tmp, f)));
    if (missing.length > 0) {
      throw new PatchFedError(
        'tensorflow-setup-extract',
        `setup tensorflow: ${path.basename(wheel)} has no ${missing.join(', ')}; TensorFlow ${options.tensorflowVersion} does not ship the C library this setup builds against (${DEFAULT_TENSORFLOW_VERSION} does)`,
        { subject: wheel },
      );
    }
    let cudaRequirements: string[] = [];
    let nvidiaLibDirs: string[] = [];
    if (v.variant === 'gpu') {
      cudaRequirements = andCudaRequirements(readWheelMetadata(python, wheel, run));
      log(`  downloading the CUDA 12 / cuDNN pip packages TensorFlow ${options.tensorflowVersion} asks for: ${cudaRequirements.join(' ')}…`);
      const cudaWheels = pipDownload(python, cudaRequirements, wheels, run, deps.preflight.env);
      downloaded.push(...cudaWheels);
      for (const w of cudaWheels) extractWheel(python, w, tmp, NVIDIA_RULES, run, NVIDIA_EXCLUDE);
      nvidiaLibDirs = libraryDirs(tmp, 'nvidia');
    }
    let stripped = false;
    if (deps.strip !== null) {
      for (const lib of LIBRARIES) {
        const r = run(deps.strip, ['--strip-unneeded', path.join(tmp, 'lib', lib)], { timeoutMs: 10 * 60_000 });
        if (r.status !== 0) throw new PatchFedError('tensorflow-setup-extract', `setup tensorflow: strip ${lib} failed: ${failureLine(r)}`, { subject: lib });
      }
      stripped = true;
    }
    const libraryBytes = LIBRARIES.reduce((s, lib) => s + statSync(path.join(tmp, 'lib', lib)).size, 0);
    const record: ExtractedLibrary = {
      dir: finalDir,
      distribution: v.distribution,
      tensorflowVersion: options.tensorflowVersion,
      wheel: path.basename(wheel),
      libraryBytes,
      stripped,
      cudaRequirements,
      nvidiaLibDirs,
    };
    writeFileAtomic(path.join(tmp, RECORD), `${JSON.stringify(record, null, 2)}\n`);
    rmSync(finalDir, { recursive: true, force: true });
    renameSync(tmp, finalDir);
    log(`  extracted the C API headers and libraries (${mb(libraryBytes)}${stripped ? ' after strip' : ''}) to ${finalDir} in ${seconds(t0)}`);
    for (const w of downloaded) rmSync(w, { force: true });
    return { library: record, cached: false };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Folders named lib under `root/sub` (relative to root), e.g. nvidia/cudnn/lib. */
function libraryDirs(root: string, sub: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel))) {
      const child = path.join(rel, name);
      if (!statSync(path.join(root, child)).isDirectory()) continue;
      if (name === 'lib') out.push(child);
      else walk(child);
    }
  };
  if (existsSync(path.join(root, sub))) walk(sub);
  return out.sort();
}

export function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}

export function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}
