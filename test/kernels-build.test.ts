/**
 * The CI guard for the native kernels: with CI set, a missing addon FAILS the suite (so .ci/run
 * proves `npm ci` built it and the fast-kernel tests really ran); without CI it is skipped with
 * the reason. The verdict logic itself is tested on fake load results.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCI, nativeBuildVerdict } from '../site-agent/kernels/build-guard.ts';
import { FAST_CPU_BACKEND, registerFastCpuBackend } from '../site-agent/kernels/index.ts';
import { loadNativeAddonFrom, loadNativeKernels, NATIVE_ADDON_PATH, type NativeConvAddon } from '../site-agent/kernels/native-addon.ts';

describe('native kernel build guard', () => {
  it('the addon is built and registers cpu-fast (required when CI is set; skipped with the reason otherwise)', async (ctx) => {
    const verdict = nativeBuildVerdict(loadNativeKernels());
    if (verdict.status === 'missing-allowed') ctx.skip(verdict.message);
    expect(verdict.status, verdict.message).toBe('built');
    expect((await registerFastCpuBackend())?.backendName).toBe(FAST_CPU_BACKEND);
  });

  it('fails a missing addon only when CI is set, naming the reason and the build log', () => {
    const missing = { ok: false as const, reason: `not built (no ${NATIVE_ADDON_PATH})` };
    const inCI = nativeBuildVerdict(missing, { CI: '1' });
    expect(inCI.status).toBe('missing-in-ci');
    expect(inCI.message).toContain('CI=1');
    expect(inCI.message).toContain(missing.reason);
    expect(inCI.message).toContain('build/build.log');
    for (const env of [{}, { CI: '' }, { CI: '0' }, { CI: 'false' }, { CI: 'FALSE' }]) {
      const v = nativeBuildVerdict(missing, env);
      expect(v.status, JSON.stringify(env)).toBe('missing-allowed');
      expect(v.message).toMatch(/CI is not set, so their tests are skipped/);
    }
    const built = nativeBuildVerdict({ ok: true, addon: {} as NativeConvAddon, path: '/x/patchfed_conv3d.node' }, { CI: 'true' });
    expect(built).toEqual({ status: 'built', message: 'native kernels loaded from /x/patchfed_conv3d.node' });
  });

  it('treats CI=1/true/yes as set and unset/empty/0/false as not set', () => {
    expect([{ CI: '1' }, { CI: 'true' }, { CI: 'yes' }, { CI: ' TRUE ' }].map((env) => isCI(env))).toEqual([true, true, true, true]);
    expect([{}, { CI: '' }, { CI: '0' }, { CI: 'false' }].map((env) => isCI(env))).toEqual([false, false, false, false]);
  });
});

describe('native addon loader', () => {
  it('reports, instead of throwing, a missing, disabled, unloadable or stale build', () => {
    const dir = mkdtempSync(join(tmpdir(), 'patchfed-addon-'));
    try {
      const missing = loadNativeAddonFrom(join(dir, 'none.node'), {});
      expect(missing).toEqual({ ok: false, reason: `not built (no ${join(dir, 'none.node')}; run 'node site-agent/kernels/native/build.mjs')` });
      expect(loadNativeAddonFrom(NATIVE_ADDON_PATH, { PATCHFED_NATIVE_KERNELS: '0' })).toEqual({ ok: false, reason: 'disabled by PATCHFED_NATIVE_KERNELS=0' });
      const corrupt = join(dir, 'corrupt.node');
      writeFileSync(corrupt, 'not an ELF file');
      const broken = loadNativeAddonFrom(corrupt, {});
      expect(broken.ok ? 'loaded' : broken.reason).toMatch(new RegExp(`^failed to load ${corrupt}: `));
      // An older build that lacks some of the functions this code calls.
      const stale = join(dir, 'stale.cjs');
      writeFileSync(stale, 'exports.conv3dForward = () => {};');
      const old = loadNativeAddonFrom(stale, {});
      expect(old.ok ? 'loaded' : old.reason).toMatch(/stale\.cjs is stale \(missing conv3dBackpropInput, .*threads\); rebuild it$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
