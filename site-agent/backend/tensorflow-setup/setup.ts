/**
 * `patchfed setup tensorflow [--gpu]`: makes the 'tensorflow' backend available without
 * tfjs-node's own install script (which downloads libtensorflow 2.9.1 from a host many sites
 * cannot reach, and whose GPU build needs the long-retired CUDA 11.2). Steps, each skipped when
 * its result is already there:
 *   1. preflight: the tfjs package is installed, pip, a compiler and make are there;
 *   2. the TensorFlow C library from the pinned pip wheel, cached outside the checkout;
 *   3. deps/ of the package (headers, libraries, symlinks);
 *   4. the binding built from source against it;
 *   5. a smoke test in a child process; then the setup record that makes a re-run a no-op.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PatchFedError } from '../../../shared/errors.ts';
import { bindingPath, depsDir, findPackageDir, packageVersion } from '../tfjs-node-package.ts';
import { buildBinding } from './build-binding.ts';
import { ldLibraryPath } from './cuda-packages.ts';
import { cachedLibrary, ensureLibrary, mb, seconds, type ExtractedLibrary } from './library-cache.ts';
import { assertCacheOutsideCheckout, buildLogPath, variantOf, type SetupOptions, type Variant } from './options.ts';
import { checkCompiler, checkDiskSpace, defaultPreflightDeps, findPythonWithPip, REQUIRED_BYTES, type PreflightDeps } from './preflight.ts';
import { installDeps, readSetupRecord, writeSetupRecord, type SetupRecord } from './package-deps.ts';
import { runTool, type ToolRunner } from './run-tool.ts';
import { smokeTest, type SmokeResult } from './smoke-test.ts';

export interface SetupDeps {
  run: ToolRunner;
  preflight: PreflightDeps;
  findPackageDir: (name: string) => string | null;
  /** The checkout the cache must stay out of. */
  checkoutDir: string;
  log: (line: string) => void;
}

export interface SetupResult {
  variant: Variant;
  packageDir: string;
  /** Nothing to do: the package was already set up for this version and its binding works. */
  alreadySetUp: boolean;
  library: Pick<ExtractedLibrary, 'distribution' | 'tensorflowVersion' | 'wheel'>;
  smoke: SmokeResult;
  ldLibraryPath: string | null;
  ms: number;
}

const CHECKOUT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export function defaultSetupDeps(log: (line: string) => void): SetupDeps {
  return { run: runTool, preflight: defaultPreflightDeps, findPackageDir, checkoutDir: CHECKOUT_DIR, log };
}

export function runTensorflowSetup(options: SetupOptions, deps: SetupDeps): SetupResult {
  const t0 = Date.now();
  const v = variantOf(options.variant);
  const { log, run } = deps;
  assertCacheOutsideCheckout(options.cacheDir, deps.checkoutDir);
  const packageDir = deps.findPackageDir(v.packageName);
  if (packageDir === null) {
    throw new PatchFedError(
      'tensorflow-setup-package',
      `setup tensorflow: ${v.packageName} is not installed; run 'npm install' (it is an optional dependency, installed without its download script by package.json allowScripts)`,
      { subject: v.packageName },
    );
  }
  const pkgVersion = packageVersion(packageDir);
  log(`setup tensorflow${v.variant === 'gpu' ? ' --gpu' : ''}: ${v.packageName} ${pkgVersion} with ${v.distribution} ${options.tensorflowVersion} (cache ${options.cacheDir})`);

  if (!options.force) {
    const done = alreadySetUp(packageDir, pkgVersion, options, v, run, deps.preflight.env);
    if (done) {
      log(`  already set up (${done.record.wheel}); binding ${done.record.binding} works: TensorFlow ${done.smoke.tensorflowVersion}. Use --force to rebuild.`);
      return { variant: v, packageDir, alreadySetUp: true, library: done.record, smoke: done.smoke, ldLibraryPath: done.record.ldLibraryPath, ms: Date.now() - t0 };
    }
  }

  // Everything the steps need is checked before the long download starts.
  checkCompiler(deps.preflight);
  let library: ExtractedLibrary;
  const cached = cachedLibrary(options, v);
  if (cached) {
    library = cached;
    log(`  TensorFlow library: cached in ${cached.dir} (${cached.wheel}, ${mb(cached.libraryBytes)})`);
  } else {
    const python = findPythonWithPip(deps.preflight);
    log(`  pip: ${python.pipVersion} (${python.python})`);
    const strip = deps.preflight.findOnPath('strip', deps.preflight.env);
    library = ensureLibrary(options, v, { python: python.python, run, preflight: deps.preflight, strip, log }).library;
  }

  // deps/ is hard-linked to the cache on one filesystem; a copy needs room in node_modules.
  checkDiskSpace(packageDir, sameFilesystem(library.dir, packageDir) ? 0 : REQUIRED_BYTES[v.variant].deps, `a copy of the library in ${packageDir}`, deps.preflight);
  const installed = installDeps(library, packageDir);
  log(`  deps: ${installed.dir} (${installed.hardLinked ? 'hard links to the cache' : 'copied from the cache'})`);

  let t = Date.now();
  log(`  building the binding from source (node-pre-gyp install --build-from-source)…`);
  const built = buildBinding(packageDir, buildLogPath(options.cacheDir, v), run, deps.preflight.env);
  log(`  binding: ${path.relative(packageDir, built.binding)} built in ${seconds(t)} against ${built.nodeDir ? `the Node headers in ${built.nodeDir}` : 'downloaded Node headers'} (log ${built.log})`);

  t = Date.now();
  const smoke = smokeTest(packageDir, run, deps.preflight.env);
  log(`  smoke test: backend '${smoke.backend}', TensorFlow ${smoke.tensorflowVersion}, Conv3D and its gradient exact${v.variant === 'gpu' ? `, GPU device ${smoke.gpuDevice ? 'in use' : 'not in use'}` : ''} (${seconds(t)})`);

  const ld = v.variant === 'gpu' ? ldLibraryPath(installed.dir, library.nvidiaLibDirs) : null;
  const record: SetupRecord = {
    packageName: v.packageName,
    packageVersion: pkgVersion,
    distribution: library.distribution,
    tensorflowVersion: library.tensorflowVersion,
    wheel: library.wheel,
    binding: path.relative(packageDir, built.binding),
    ldLibraryPath: ld,
    setupAt: new Date().toISOString(),
  };
  writeSetupRecord(packageDir, record);
  return { variant: v, packageDir, alreadySetUp: false, library, smoke, ldLibraryPath: ld, ms: Date.now() - t0 };
}

/** The setup record matches what is asked, the binding is there and passes the smoke test. */
function alreadySetUp(
  packageDir: string,
  pkgVersion: string,
  options: SetupOptions,
  v: Variant,
  run: ToolRunner,
  env: NodeJS.ProcessEnv,
): { record: SetupRecord; smoke: SmokeResult } | null {
  const record = readSetupRecord(packageDir);
  if (!record || record.packageVersion !== pkgVersion || record.distribution !== v.distribution || record.tensorflowVersion !== options.tensorflowVersion) return null;
  if (!existsSync(bindingPath(packageDir)) || !existsSync(path.join(depsDir(packageDir), 'lib', 'libtensorflow_cc.so.2'))) return null;
  try {
    return { record, smoke: smokeTest(packageDir, run, env) };
  } catch {
    return null;
  }
}

function sameFilesystem(a: string, b: string): boolean {
  try {
    return statSync(a).dev === statSync(b).dev;
  } catch {
    return false;
  }
}
