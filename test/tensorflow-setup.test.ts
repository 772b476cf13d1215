/**
 * `patchfed setup tensorflow [--gpu]` without downloading anything: options and their errors,
 * the preflight's one-line messages (pip, compiler, disk), the wheel → cache → deps/ pipeline on
 * synthetic wheels for both variants (the GPU one with CUDA/cuDNN packages laid out as
 * deps/nvidia/<lib>/lib, which is all of --gpu that can be exercised without a GPU), a hostile
 * wheel, and — when the backend is set up — that running setup again is a no-op.
 * Cost: ~15 s (a few CLI processes and Python extractions).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { andCudaRequirements, ldLibraryPath } from '../site-agent/backend/tensorflow-setup/cuda-packages.ts';
import { cachedLibrary, ensureLibrary } from '../site-agent/backend/tensorflow-setup/library-cache.ts';
import {
  assertCacheOutsideCheckout,
  DEFAULT_TENSORFLOW_VERSION,
  defaultCacheDir,
  parseTensorflowVersion,
  variantOf,
  type SetupOptions,
} from '../site-agent/backend/tensorflow-setup/options.ts';
import { installDeps, LIBRARY_SYMLINKS, readSetupRecord } from '../site-agent/backend/tensorflow-setup/package-deps.ts';
import { checkCompiler, checkDiskSpace, defaultPreflightDeps, findPythonWithPip, type PreflightDeps } from '../site-agent/backend/tensorflow-setup/preflight.ts';
import { failureLine, runTool, type ToolRunner } from '../site-agent/backend/tensorflow-setup/run-tool.ts';
import { requirementName, wheelPrefix } from '../site-agent/backend/tensorflow-setup/wheel.ts';
import { bindingPath, findPackageDir } from '../site-agent/backend/tfjs-node-package.ts';
import { requireTensorflow } from './tensorflow-fixtures.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'cli', 'patchfed.js');
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'patchfed-tfsetup-'));
  dirs.push(d);
  return d;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Python with pip, as the setup finds it; the wheel tests need it to write and read zip files. */
const python = (() => {
  try {
    return findPythonWithPip().python;
  } catch {
    return null;
  }
})();

/** Writes a wheel (a zip) with `files` (member → text content). */
function writeWheel(file: string, files: Record<string, string>): void {
  const script = 'import json,sys,zipfile\nwith zipfile.ZipFile(sys.argv[1],"w") as z:\n    for n,c in json.loads(sys.argv[2]).items(): z.writestr(n,c)';
  const r = runTool(python ?? 'python3', ['-c', script, file, JSON.stringify(files)]);
  if (r.status !== 0) throw new Error(failureLine(r));
}

const TF_MEMBERS = {
  'tensorflow/include/tensorflow/c/c_api.h': '// c api',
  'tensorflow/include/tensorflow/c/eager/c_api.h': '// eager',
  'tensorflow/include/tensorflow/core/platform/ctstring.h': '// ctstring',
  'tensorflow/include/tensorflow/core/framework/tensor.h': '// not needed by the binding',
  'tensorflow/include/tsl/platform/macros.h': '// tsl',
  'tensorflow/include/xla/tsl/c/tsl_status.h': '// xla tsl',
  'tensorflow/libtensorflow_cc.so.2': 'ELF cc',
  'tensorflow/libtensorflow_framework.so.2': 'ELF framework',
  'tensorflow/python/ops/nn_ops.py': '# python',
};

/** The Requires-Dist lines of the real tensorflow(-cpu) 2.21.0 METADATA that matter here. */
const METADATA = [
  'Metadata-Version: 2.4',
  'Name: tensorflow',
  'Version: 2.21.0',
  'Requires-Dist: numpy>=1.26.0',
  'Requires-Dist: nvidia-cublas-cu12<13.0,>=12.5.3.2; extra == "and-cuda"',
  'Requires-Dist: nvidia-cudnn-cu12<10.0,>=9.3.0.75; extra == "and-cuda"',
  'Requires-Dist: tensorflow-io-gcs-filesystem>=0.23.1; (sys_platform != "win32" and python_version < "3.13") and extra == "gcs-filesystem"',
  '',
].join('\n');

/** A fake `pip download`: copies the synthetic wheel for each requirement into --dest; everything else runs for real. */
function fakePip(wheels: Record<string, string>, calls: string[][]): ToolRunner {
  return (command, args, options) => {
    if (args[0] === '-m' && args[1] === 'pip' && args[2] === 'download') {
      calls.push([...args.slice(2)]);
      const dest = args[args.indexOf('--dest') + 1]!;
      for (const req of args.slice(args.indexOf('--dest') + 2)) {
        const src = wheels[requirementName(req)];
        if (!src) return { status: 1, stdout: '', stderr: `ERROR: No matching distribution found for ${req}`, spawnError: null };
        writeFileSync(path.join(dest, path.basename(src)), readFileSync(src));
      }
      return { status: 0, stdout: 'Successfully downloaded', stderr: '', spawnError: null };
    }
    return runTool(command, args, options);
  };
}

const roomyPreflight: PreflightDeps = { ...defaultPreflightDeps, freeBytes: () => 1e12, env: {} };
const noLog = () => {};

describe('setup options', () => {
  it('pins 2.21.0 by default and accepts only pip-pinnable release versions', () => {
    expect(DEFAULT_TENSORFLOW_VERSION).toBe('2.21.0');
    for (const v of ['2.21.0', '2.20', '2.20.0rc1', '2.19.1.post1']) expect(parseTensorflowVersion(v)).toBe(v);
    for (const v of ['latest', '2', '2.21.0; rm -rf /', '>=2.21', '']) expect(() => parseTensorflowVersion(v), v).toThrow(/--tf-version must be a TensorFlow release/);
  });

  it('keeps the cache outside the checkout', () => {
    expect(defaultCacheDir({}, '/home/u')).toBe('/home/u/.cache/patchfed');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x' }, '/home/u')).toBe('/x/patchfed');
    expect(defaultCacheDir({ PATCHFED_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' }, '/home/u')).toBe('/c');
    expect(() => assertCacheOutsideCheckout('/repo/cache', '/repo')).toThrow(/inside the checkout/);
    expect(() => assertCacheOutsideCheckout('/repo', '/repo')).toThrow(/inside the checkout/);
    expect(() => assertCacheOutsideCheckout('/repo/node_modules/.cache/patchfed', '/repo')).not.toThrow();
    expect(() => assertCacheOutsideCheckout('/home/u/.cache/patchfed', '/repo')).not.toThrow();
  });

  it('maps each variant to its package and wheel', () => {
    expect(variantOf('cpu')).toEqual({ variant: 'cpu', packageName: '@tensorflow/tfjs-node', distribution: 'tensorflow-cpu' });
    expect(variantOf('gpu')).toEqual({ variant: 'gpu', packageName: '@tensorflow/tfjs-node-gpu', distribution: 'tensorflow' });
    expect(wheelPrefix('tensorflow-cpu')).toBe('tensorflow_cpu-');
    expect(requirementName('nvidia-cudnn-cu12<10.0,>=9.3.0.75')).toBe('nvidia-cudnn-cu12');
  });

  it('reads the CUDA packages of --gpu from the wheel metadata (and-cuda extra only)', () => {
    expect(andCudaRequirements(METADATA)).toEqual(['nvidia-cublas-cu12<13.0,>=12.5.3.2', 'nvidia-cudnn-cu12<10.0,>=9.3.0.75']);
    expect(() => andCudaRequirements('Name: tensorflow\nRequires-Dist: numpy\n')).toThrow(/lists no "and-cuda" requirements/);
  });
});

describe('preflight: one clear line for each missing piece', () => {
  const deps = (over: Partial<PreflightDeps>): PreflightDeps => ({ ...defaultPreflightDeps, env: {}, ...over });

  it('pip', () => {
    expect(() => findPythonWithPip(deps({ findOnPath: () => null }))).toThrow(
      'setup tensorflow: pip is not available (python3: not found; python: not found); install Python 3 with pip (e.g. apt-get install python3-pip) or set PATCHFED_PYTHON to a Python that has pip.',
    );
    const noPip = deps({
      findOnPath: (n) => `/usr/bin/${n}`,
      run: () => ({ status: 1, stdout: '', stderr: '/usr/bin/python3: No module named pip', spawnError: null }),
      env: { PATCHFED_PYTHON: 'python3' },
    });
    expect(() => findPythonWithPip(noPip)).toThrow(/pip is not available \(python3 -m pip: \/usr\/bin\/python3: No module named pip\)/);
  });

  it('compiler and make', () => {
    expect(() => checkCompiler(deps({ findOnPath: (n) => (n === 'make' ? '/usr/bin/make' : null), env: { CXX: 'clang++' } }))).toThrow(
      'setup tensorflow: a C++ compiler (clang++) not found on PATH; the tfjs-node binding is compiled from source (install them, e.g. apt-get install g++ make).',
    );
    expect(() => checkCompiler(deps({ findOnPath: () => null }))).toThrow(/a C\+\+ compiler \(g\+\+\) and make not found/);
  });

  it('disk space', () => {
    expect(() => checkDiskSpace('/var/cache/x/y', 1.3e9, 'the tensorflow-cpu 2.21.0 download', deps({ freeBytes: () => 0.3e9 }))).toThrow(
      /^setup tensorflow: not enough disk space for the tensorflow-cpu 2\.21\.0 download in \/var[^:]*: needs ~1\.3 GB, 0\.3 GB free/,
    );
    expect(() => checkDiskSpace('/tmp', 1.3e9, 'x', deps({ freeBytes: () => 2e9 }))).not.toThrow();
  });
});

describe('wheel → cache → deps/ on synthetic wheels', () => {
  it.skipIf(python === null)('cpu: extracts only what the binding needs, caches it atomically, links it into deps/ with the linker names', () => {
    const root = tempDir();
    const wheelDir = path.join(root, 'index');
    mkdirSync(wheelDir);
    const tfWheel = path.join(wheelDir, 'tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl');
    writeWheel(tfWheel, { ...TF_MEMBERS, 'tensorflow_cpu-2.21.0.dist-info/METADATA': METADATA });
    const calls: string[][] = [];
    const options: SetupOptions = { variant: 'cpu', tensorflowVersion: '2.21.0', cacheDir: path.join(root, 'cache'), force: false };
    const v = variantOf('cpu');
    const run = fakePip({ 'tensorflow-cpu': tfWheel }, calls);
    const { library, cached } = ensureLibrary(options, v, { python: python!, run, preflight: roomyPreflight, strip: null, log: noLog });
    expect(cached).toBe(false);
    expect(calls).toEqual([['download', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check', '--dest', path.join(options.cacheDir, 'wheels'), 'tensorflow-cpu==2.21.0']]);
    expect(library).toMatchObject({ distribution: 'tensorflow-cpu', tensorflowVersion: '2.21.0', stripped: false, cudaRequirements: [], nvidiaLibDirs: [] });
    const files = listFiles(library.dir);
    expect(files).toEqual([
      'extracted.json',
      'include/tensorflow/c/c_api.h',
      'include/tensorflow/c/eager/c_api.h',
      'include/tensorflow/core/platform/ctstring.h',
      'include/tsl/platform/macros.h',
      'include/xla/tsl/c/tsl_status.h',
      'lib/libtensorflow_cc.so.2',
      'lib/libtensorflow_framework.so.2',
    ]);
    expect(readdirSync(path.join(options.cacheDir, 'wheels'))).toEqual([]); // the wheel is not kept
    expect(readdirSync(options.cacheDir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // A second run finds it in the cache: no pip.
    expect(cachedLibrary(options, v)?.wheel).toBe(path.basename(tfWheel));
    ensureLibrary(options, v, { python: python!, run, preflight: roomyPreflight, strip: null, log: noLog });
    expect(calls).toHaveLength(1);

    const pkg = path.join(root, 'node_modules', '@tensorflow', 'tfjs-node');
    mkdirSync(pkg, { recursive: true });
    const installed = installDeps(library, pkg);
    expect(installed.hardLinked).toBe(true);
    const lib = path.join(pkg, 'deps', 'lib');
    for (const [name, target] of Object.entries(LIBRARY_SYMLINKS)) {
      expect(readlinkSync(path.join(lib, name))).toBe(target);
      expect(readFileSync(path.join(lib, name), 'utf8')).toBe(target.startsWith('libtensorflow_cc') ? 'ELF cc' : 'ELF framework');
    }
    expect(statSync(path.join(lib, 'libtensorflow_cc.so.2')).ino).toBe(statSync(path.join(library.dir, 'lib', 'libtensorflow_cc.so.2')).ino);
    expect(readFileSync(path.join(pkg, 'deps', 'include', 'tensorflow', 'c', 'c_api.h'), 'utf8')).toBe('// c api');
    // Installing again replaces deps/ whole (no leftovers, no temporary folders).
    installDeps(library, pkg);
    expect(readdirSync(pkg)).toEqual(['deps']);
    expect(readSetupRecord(pkg)).toBeNull(); // written only after the binding passed its smoke test
  });

  it.skipIf(python === null)('gpu (untested on a GPU): the GPU wheel plus its and-cuda packages, laid out as deps/nvidia/<lib>/lib', () => {
    const root = tempDir();
    const wheelDir = path.join(root, 'index');
    mkdirSync(wheelDir);
    const wheels = {
      tensorflow: path.join(wheelDir, 'tensorflow-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl'),
      'nvidia-cublas-cu12': path.join(wheelDir, 'nvidia_cublas_cu12-12.9.1.4-py3-none-manylinux_2_27_x86_64.whl'),
      'nvidia-cudnn-cu12': path.join(wheelDir, 'nvidia_cudnn_cu12-9.10.2.21-py3-none-manylinux_2_27_x86_64.whl'),
    };
    writeWheel(wheels.tensorflow, { ...TF_MEMBERS, 'tensorflow-2.21.0.dist-info/METADATA': METADATA });
    writeWheel(wheels['nvidia-cublas-cu12'], { 'nvidia/__init__.py': '', 'nvidia/cublas/__init__.py': '', 'nvidia/cublas/include/cublas.h': '//', 'nvidia/cublas/lib/libcublas.so.12': 'ELF cublas', 'nvidia/cublas/lib/libcublasLt.so.12': 'ELF cublasLt' });
    writeWheel(wheels['nvidia-cudnn-cu12'], { 'nvidia/cudnn/include/cudnn.h': '//', 'nvidia/cudnn/lib/libcudnn.so.9': 'ELF cudnn' });
    const calls: string[][] = [];
    const options: SetupOptions = { variant: 'gpu', tensorflowVersion: '2.21.0', cacheDir: path.join(root, 'cache'), force: false };
    const { library } = ensureLibrary(options, variantOf('gpu'), { python: python!, run: fakePip(wheels, calls), preflight: roomyPreflight, strip: null, log: noLog });
    expect(calls.map((c) => c.slice(6))).toEqual([['tensorflow==2.21.0'], ['nvidia-cublas-cu12<13.0,>=12.5.3.2', 'nvidia-cudnn-cu12<10.0,>=9.3.0.75']]);
    expect(library.cudaRequirements).toEqual(['nvidia-cublas-cu12<13.0,>=12.5.3.2', 'nvidia-cudnn-cu12<10.0,>=9.3.0.75']);
    expect(library.nvidiaLibDirs).toEqual(['nvidia/cublas/lib', 'nvidia/cudnn/lib']);
    expect(listFiles(path.join(library.dir, 'nvidia'))).toEqual(['cublas/lib/libcublas.so.12', 'cublas/lib/libcublasLt.so.12', 'cudnn/lib/libcudnn.so.9']);
    expect(readdirSync(path.join(options.cacheDir, 'wheels'))).toEqual([]);

    const pkg = path.join(root, 'node_modules', '@tensorflow', 'tfjs-node-gpu');
    mkdirSync(pkg, { recursive: true });
    const installed = installDeps(library, pkg);
    // TensorFlow's RUNPATH $ORIGIN/../nvidia/<lib>/lib from deps/lib lands here:
    expect(readFileSync(path.join(pkg, 'deps', 'lib', '..', 'nvidia', 'cudnn', 'lib', 'libcudnn.so.9'), 'utf8')).toBe('ELF cudnn');
    expect(ldLibraryPath(installed.dir, library.nvidiaLibDirs)).toBe(
      [path.join(pkg, 'deps', 'lib'), path.join(pkg, 'deps', 'nvidia', 'cublas', 'lib'), path.join(pkg, 'deps', 'nvidia', 'cudnn', 'lib')].join(':'),
    );
  });

  it.skipIf(python === null)('refuses a wheel without the C library, and one whose members escape the cache', () => {
    const root = tempDir();
    const noLib = path.join(root, 'tensorflow_cpu-2.21.0-cp311-none-any.whl');
    const { ['tensorflow/libtensorflow_cc.so.2']: _cc, ...withoutCc } = TF_MEMBERS;
    writeWheel(noLib, withoutCc);
    const options: SetupOptions = { variant: 'cpu', tensorflowVersion: '2.21.0', cacheDir: path.join(root, 'cache'), force: false };
    const deps = { python: python!, run: fakePip({ 'tensorflow-cpu': noLib }, []), preflight: roomyPreflight, strip: null, log: noLog };
    expect(() => ensureLibrary(options, variantOf('cpu'), deps)).toThrow(/has no lib\/libtensorflow_cc\.so\.2; TensorFlow 2\.21\.0 does not ship the C library/);
    const hostile = path.join(root, 'h', 'tensorflow_cpu-2.21.0-cp311-none-any.whl');
    mkdirSync(path.dirname(hostile));
    writeWheel(hostile, { ...TF_MEMBERS, 'tensorflow/include/tsl/../../../../../../escaped.h': 'x' });
    expect(() => ensureLibrary(options, variantOf('cpu'), { ...deps, run: fakePip({ 'tensorflow-cpu': hostile }, []) })).toThrow(/extracting .* failed: unsafe member path/);
    expect(existsSync(path.join(root, 'escaped.h'))).toBe(false);
    expect(existsSync(path.join(options.cacheDir, 'tensorflow-cpu-2.21.0'))).toBe(false);
    expect(readdirSync(options.cacheDir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('patchfed setup tensorflow (CLI)', () => {
  it('exits 2 on bad options, with one line', () => {
    const bad = cli(['setup', 'tensorflow', '--tf-version', 'latest']);
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim()).toBe("patchfed: --tf-version must be a TensorFlow release such as 2.21.0, got 'latest'.");
    const inside = cli(['setup', 'tensorflow', '--cache-dir', 'cache']);
    expect(inside.status).toBe(2);
    expect(inside.stderr).toMatch(/is inside the checkout/);
    expect(cli(['setup', 'pytorch']).status).toBe(2);
  });

  it('exits 1 with one line when pip or the compiler is missing, touching nothing (--gpu reaches the same checks)', () => {
    const cache = tempDir();
    const noPip = cli(['setup', 'tensorflow', '--force', '--cache-dir', cache], { PATCHFED_PYTHON: '/nonexistent/python3' });
    expect(noPip.status).toBe(1);
    expect(noPip.stderr.trim().split('\n')).toEqual([
      'patchfed: setup tensorflow: pip is not available (/nonexistent/python3: not found); install Python 3 with pip (e.g. apt-get install python3-pip) or set PATCHFED_PYTHON to a Python that has pip.',
    ]);
    const noCompiler = cli(['setup', 'tensorflow', '--gpu', '--force', '--cache-dir', cache], { CXX: '/nonexistent/g++' });
    expect(noCompiler.status).toBe(1);
    expect(noCompiler.stdout).toMatch(/^setup tensorflow --gpu: @tensorflow\/tfjs-node-gpu \S+ with tensorflow 2\.21\.0/);
    expect(noCompiler.stderr.trim()).toMatch(/^patchfed: setup tensorflow: a C\+\+ compiler \(\/nonexistent\/g\+\+\) not found on PATH/);
    expect(readdirSync(cache)).toEqual([]);
  });

  it('is a no-op when already set up (the binding is not rebuilt)', (ctx) => {
    requireTensorflow(ctx);
    const binding = bindingPath(findPackageDir('@tensorflow/tfjs-node') ?? '');
    const before = statSync(binding).mtimeMs;
    const r = cli(['setup', 'tensorflow']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/already set up .* works: TensorFlow 2\.21\.0/);
    expect(r.stdout).toMatch(/^nothing to do: --backend tensorflow \(and auto\) now uses @tensorflow\/tfjs-node on TensorFlow 2\.21\.0$/m);
    expect(statSync(binding).mtimeMs).toBe(before);
  }, 60_000);
});

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(path.join(dir, r)).isDirectory()) walk(r);
      else out.push(r);
    }
  };
  walk('');
  return out.sort();
}
