import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import {
  defaultCandidates,
  fastCpuCandidate,
  prepareGpuEnvironment,
  visibleCudaDevices,
  type BackendCandidate,
  type BackendChoice,
  type LoadedBackend,
} from '../site-agent/backend/candidates.ts';
import { assertTrainableBackend, parseBackendChoice, selectBackend, type BackendReport } from '../site-agent/backend/select.ts';
import type { SelfCheckResult } from '../site-agent/backend/self-check.ts';
import { loadNativeKernels } from '../site-agent/kernels/native-addon.ts';
import { bindingPath, findPackageDir } from '../site-agent/backend/tfjs-node-package.ts';

function available(id: string, backend: Partial<LoadedBackend> = {}): BackendCandidate & { loads: number } {
  const c = {
    id,
    loads: 0,
    async load() {
      c.loads++;
      return { ok: true as const, backend: { backendName: id, packageName: `pkg-${id}`, version: '1.0.0', gpu: false, notes: [], ...backend } };
    },
  };
  return c;
}

function missing(id: string, reason = `${id} is not installed`): BackendCandidate & { loads: number } {
  const c = {
    id,
    loads: 0,
    async load() {
      c.loads++;
      return { ok: false as const, reason };
    },
  };
  return c;
}

const passing = async (name: string): Promise<SelfCheckResult> => ({ passed: true, maxRelError: 1e-4, detail: `ok on ${name}`, checks: [] });
const failing = async (name: string): Promise<SelfCheckResult> => ({ passed: false, maxRelError: 1.1, detail: `input gradient wrong on ${name}`, checks: [] });

describe('backend selection logic (fake candidates)', () => {
  it('auto picks the first available candidate and does not load the rest', async () => {
    const table = [missing('tfjs-node-gpu'), available('tfjs-node', { backendName: 'tensorflow' }), available('cpu-fast'), available('cpu')];
    const activated: string[] = [];
    const logged: string[] = [];
    const report = await selectBackend('auto', (m) => logged.push(m), {
      candidates: () => table,
      activate: async (name) => (activated.push(name), true),
      selfCheck: passing,
    });
    expect(report).toMatchObject({ name: 'tensorflow', choice: 'auto', package: 'pkg-tfjs-node', version: '1.0.0', gpu: false });
    expect(report.selfCheck).toEqual({ passed: true, maxRelError: 1e-4, detail: 'ok on tensorflow' });
    expect(activated).toEqual(['tensorflow']);
    expect(table.map((c) => c.loads)).toEqual([1, 1, 0, 0]);
    expect(report.notes[0]).toBe('tfjs-node-gpu: tfjs-node-gpu is not installed');
    expect(report.notes).toContain('auto: using tfjs-node because tfjs-node-gpu is unavailable');
    expect(logged).toEqual(report.notes);
  });

  it('falls through unavailable and uninitialisable candidates down to cpu, noting each reason', async () => {
    const table = [missing('tfjs-node-gpu'), missing('tfjs-node'), available('cpu-fast'), available('cpu')];
    const report = await selectBackend('auto', undefined, {
      candidates: () => table,
      activate: async (name) => name === 'cpu',
      selfCheck: passing,
    });
    expect(report.name).toBe('cpu');
    expect(report.notes.slice(0, 3)).toEqual([
      'tfjs-node-gpu: tfjs-node-gpu is not installed',
      'tfjs-node: tfjs-node is not installed',
      "cpu-fast: could not initialise backend 'cpu-fast'",
    ]);
  });

  it("an activation that throws is a fallback, not a crash", async () => {
    const report = await selectBackend('cpu-fast', undefined, {
      candidates: () => [available('cpu-fast'), available('cpu')],
      activate: async (name) => {
        if (name === 'cpu-fast') throw new Error('kernel registration failed');
        return true;
      },
      selfCheck: passing,
    });
    expect(report.name).toBe('cpu');
    expect(report.notes).toContain("cpu-fast: could not initialise backend 'cpu-fast': kernel registration failed");
    expect(report.notes).toContain('cpu-fast: using cpu because cpu-fast is unavailable');
  });

  it('throws a PatchFedError listing every reason when nothing the choice allows can run', async () => {
    const run = selectBackend('tensorflow', undefined, {
      candidates: () => [missing('tfjs-node-gpu'), missing('tfjs-node', 'libtensorflow.so: cannot open shared object file')],
      activate: async () => true,
      selfCheck: passing,
    });
    await expect(run).rejects.toBeInstanceOf(PatchFedError);
    await expect(run).rejects.toThrow(/Backend 'tensorflow' is not available \(tried tfjs-node-gpu, tfjs-node\).*libtensorflow\.so/);
  });

  it('reports a failed self-check without throwing; assertTrainableBackend then refuses it', async () => {
    const report = await selectBackend('wasm', undefined, { candidates: () => [available('wasm')], activate: async () => true, selfCheck: failing });
    expect(report.selfCheck.passed).toBe(false);
    expect(report.notes.at(-1)).toMatch(/gradient self-check FAILED: input gradient wrong on wasm/);
    expect(() => assertTrainableBackend(report)).toThrow(PatchFedError);
    expect(() => assertTrainableBackend(report)).toThrow(/'wasm' \(pkg-wasm\) cannot be used for training: input gradient wrong/);
    const ok: BackendReport = { ...report, selfCheck: { passed: true, maxRelError: 0, detail: '' } };
    expect(() => assertTrainableBackend(ok)).not.toThrow();
  });
});

describe('the real candidate table', () => {
  it('orders gpu, tfjs-node, cpu-fast, cpu for auto and never picks wasm automatically', () => {
    const ids = (c: BackendChoice) => defaultCandidates(c).map((x) => x.id);
    expect(ids('auto')).toEqual(['tfjs-node-gpu', 'tfjs-node', 'cpu-fast', 'cpu']);
    expect(ids('tensorflow')).toEqual(['tfjs-node-gpu', 'tfjs-node']);
    expect(ids('cpu-fast')).toEqual(['cpu-fast', 'cpu']);
    expect(ids('cpu')).toEqual(['cpu']);
    expect(ids('wasm')).toEqual(['wasm']);
  });

  it('parses choices and refuses unknown ones', () => {
    expect(parseBackendChoice('cpu-fast')).toBe('cpu-fast');
    expect(() => parseBackendChoice('webgl')).toThrow(/Unknown backend 'webgl'; choose one of auto, tensorflow, wasm, cpu, cpu-fast/);
  });

  it('cpu-fast is unavailable, with the reason, when its module is missing, incomplete, failing or returns null', async () => {
    const reasons = await Promise.all(
      [
        async () => {
          throw Object.assign(new Error("Cannot find module '../kernels/index.ts'"), { code: 'ERR_MODULE_NOT_FOUND' });
        },
        async () => ({}),
        async () => ({ registerFastCpuBackend: async () => { throw new Error('addon ABI mismatch'); } }),
        async () => ({ registerFastCpuBackend: async () => null }),
        async () => ({ registerFastCpuBackend: async () => null, nativeKernelsNotice: () => 'PatchFed: native Conv3D kernels unavailable (not built)' }),
      ].map(async (importer) => {
        const r = await fastCpuCandidate(importer).load();
        return r.ok ? 'ok' : r.reason;
      }),
    );
    expect(reasons).toEqual([
      "fast cpu kernels (site-agent/kernels) could not be loaded: Cannot find module '../kernels/index.ts'",
      'site-agent/kernels does not export registerFastCpuBackend()',
      'fast cpu kernels failed to register: addon ABI mismatch',
      'fast cpu kernels are unavailable (their native code is not built for this machine)',
      'PatchFed: native Conv3D kernels unavailable (not built)',
    ]);
    const ok = await fastCpuCandidate(async () => ({ registerFastCpuBackend: async () => ({ backendName: 'cpu-fast', notice: 'using 2 threads' }) })).load();
    expect(ok).toMatchObject({ ok: true, backend: { backendName: 'cpu-fast', gpu: false, notes: ['using 2 threads'] } });
  });

  it('sets TF_FORCE_GPU_ALLOW_GROWTH only when the user has not', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(prepareGpuEnvironment(env)).toMatch(/set TF_FORCE_GPU_ALLOW_GROWTH=true/);
    expect(env.TF_FORCE_GPU_ALLOW_GROWTH).toBe('true');
    const userEnv: NodeJS.ProcessEnv = { TF_FORCE_GPU_ALLOW_GROWTH: 'false' };
    expect(prepareGpuEnvironment(userEnv)).toMatch(/kept from the environment/);
    expect(userEnv.TF_FORCE_GPU_ALLOW_GROWTH).toBe('false');
  });

  it('a GPU counts only when CUDA_VISIBLE_DEVICES leaves one visible and a device exists', () => {
    expect(visibleCudaDevices({ CUDA_VISIBLE_DEVICES: '' }, () => 2)).toMatchObject({ visible: false });
    expect(visibleCudaDevices({ CUDA_VISIBLE_DEVICES: '-1' }, () => 2).detail).toMatch(/hides every GPU/);
    expect(visibleCudaDevices({}, () => 0)).toMatchObject({ visible: false });
    expect(visibleCudaDevices({ CUDA_VISIBLE_DEVICES: '1' }, () => 2)).toEqual({ visible: true, detail: '2 NVIDIA device(s) found; CUDA_VISIBLE_DEVICES=1' });
  });

  it("auto on this machine ends on tensorflow once `patchfed setup tensorflow` built it, else on a cpu backend, passing the self-check, with notes saying why", async () => {
    const report = await selectBackend('auto');
    // tfjs-node is installed without its binding unless the setup ran; then it comes first.
    const tfjsNode = findPackageDir('@tensorflow/tfjs-node');
    const tensorflowBuilt = tfjsNode !== null && existsSync(bindingPath(tfjsNode));
    // Otherwise the native kernels are the default for CPU training whenever they are built.
    expect(report.name).toBe(tensorflowBuilt ? 'tensorflow' : loadNativeKernels().ok ? 'cpu-fast' : 'cpu');
    expect(tf.getBackend()).toBe(report.name);
    expect(report.gpu).toBe(false);
    expect(report.notes[0]).toMatch(/^tfjs-node-gpu: @tensorflow\/tfjs-node-gpu is (not installed|installed without its native binding)/);
    if (!tensorflowBuilt) expect(report.notes[1]).toMatch(/^tfjs-node: @tensorflow\/tfjs-node is (not installed|installed without its native binding)/);
    if (report.name === 'cpu') expect(report.notes.some((n) => n.startsWith('cpu-fast: '))).toBe(true);
    expect(report.selfCheck.passed).toBe(true);
    expect(() => assertTrainableBackend(report)).not.toThrow();
  });

  it("auto falls back to stock cpu, with a notice saying why, when the native kernels are unavailable", () => {
    // A fresh process: the addon loader caches its result, and this one has already loaded it.
    const script = [
      "const { selectBackend } = await import('./site-agent/backend/select.ts');",
      "const r = await selectBackend('auto');",
      'process.stdout.write(JSON.stringify({ name: r.name, passed: r.selfCheck.passed, notes: r.notes }));',
    ].join('\n');
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, PATCHFED_NATIVE_KERNELS: '0', PATCHFED_TENSORFLOW: '0' },
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { name: string; passed: boolean; notes: string[] };
    expect(report.name).toBe('cpu');
    expect(report.passed).toBe(true);
    expect(report.notes).toContain(
      'cpu-fast: PatchFed: native Conv3D kernels unavailable (disabled by PATCHFED_NATIVE_KERNELS=0); training uses the slower stock cpu kernels',
    );
    expect(report.notes).toContain('auto: using cpu because tfjs-node-gpu, tfjs-node, cpu-fast are unavailable');
  });

  it("explicit 'cpu' reports the stock backend and its version", async () => {
    const report = await selectBackend('cpu');
    expect(report).toMatchObject({ name: 'cpu', choice: 'cpu', package: '@tensorflow/tfjs-backend-cpu', gpu: false });
    expect(report.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.selfCheck.passed).toBe(true);
  });
});
