/**
 * Mixed backends in one federation, as real processes: `patchfed coordinator` and two
 * `patchfed site` daemons, site-a on `backend: tensorflow` and site-b on `cpu-fast` (stock cpu
 * when the native kernels are not built), train one round of the tiny liver experiment; both
 * updates are accepted and averaged into one checkpoint that both sites verify and hold, and the
 * coordinator records which backend each site trained on. Skips (locally) or fails (CI=1)
 * without the tensorflow backend. Cost: ~30 s (three processes, one loading TensorFlow).
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import { StateDb } from '../coordinator/store/index.ts';
import { loadNativeKernels } from '../site-agent/kernels/native-addon.ts';
import { generatePhantomDataset } from '../site-agent/phantom/index.ts';
import { freePort, jsonLine, makeFederation, spawnCli, tinyLiverExperiment, writeSiteConfig, type CliProcess, type Federation } from './federation-fixtures.ts';
import { requireTensorflow } from './tensorflow-fixtures.ts';

let fed: Federation | null = null;
const processes: CliProcess[] = [];

afterEach(async () => {
  for (const p of processes.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  fed?.cleanup();
  fed = null;
});

function start(args: string[], name: string): CliProcess {
  const p = spawnCli(args, name);
  processes.push(p);
  return p;
}

/** The site daemon's JSON log lines (its logFile), waiting up to `timeoutMs` for one matching `until`. */
async function siteLog(file: string, until: (j: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let lines: Record<string, unknown>[] = [];
    try {
      lines = readFileSync(file, 'utf8').split('\n').map(jsonLine).filter((j): j is Record<string, unknown> => j !== null);
    } catch {
      // not written yet
    }
    if (lines.some(until) || Date.now() > deadline) return lines;
    await new Promise((r) => setTimeout(r, 200));
  }
}

it('one round with site-a on tensorflow and site-b on cpu-fast aggregates into one checkpoint both sites hold', async (ctx) => {
  requireTensorflow(ctx);
  const port = await freePort();
  const ids = ['site-a', 'site-b'] as const;
  const backends = { 'site-a': 'tensorflow', 'site-b': 'cpu-fast' } as const;
  fed = makeFederation({ port, sites: [...ids], experiment: tinyLiverExperiment({ rounds: 1, localSteps: 3 }) });
  const url = `http://127.0.0.1:${port}`;
  const configs = new Map<string, string>();
  for (const [i, id] of ids.entries()) {
    const phantom = await generatePhantomDataset({ task: 'liver', cases: 4, testCases: 0, shape: [24, 24, 16], seed: 40 + i, siteStyle: i, out: join(fed.dir, `${id}-data`) });
    configs.set(id, writeSiteConfig(fed, id, url, { dataset: phantom.dir, memoryBudgetMB: 200, backend: backends[id], logFile: `${id}-logs/site.log` }));
  }
  const coordinator = start(['coordinator', '--config', fed.configPath, '--log-level', 'debug', '--log-format', 'json'], 'coordinator');
  await coordinator.waitForLine(/patchfed coordinator listening on/);
  const sites = ids.map((id) => start(['site', '--config', configs.get(id)!], id));

  const done = await coordinator.waitForLine((l) => jsonLine(l)?.event === 'experiment-complete', 240_000);
  const finalSha = jsonLine(done)!.sha256 as string;
  const rounds = coordinator.lines.map(jsonLine).filter((j) => j?.event === 'round-complete');
  expect(rounds.map((r) => [r!.round, r!.accepted, r!.rejected])).toEqual([[1, [...ids], []]]);
  expect(rounds[0]!.sha256).toBe(finalSha);

  const expectedB = loadNativeKernels().ok ? 'cpu-fast' : 'cpu';
  for (const id of ids) {
    const log = await siteLog(join(fed.dir, `${id}-logs`, 'site.log'), (j) => j.msg === 'experiment complete');
    const backend = log.find((j) => typeof j.backend === 'string' && typeof j.version === 'string');
    expect(backend?.backend, id).toBe(id === 'site-a' ? 'tensorflow' : expectedB);
    if (id === 'site-a') expect(backend?.msg).toMatch(/^backend tensorflow \(@tensorflow\/tfjs-node 4\.22\.0 on TensorFlow 2\.\d+\.\d+\), gpu false$/);
    expect(log.find((j) => j.msg === 'experiment complete')?.sha256, id).toBe(finalSha);
  }

  for (const p of [...sites, coordinator]) p.child.kill('SIGTERM');
  for (const p of [...sites, coordinator]) expect(await p.exited).toEqual({ code: 0, signal: null });
  // The coordinator's records: each site's backend as reported with its update.
  const db = StateDb.open(join(fed.dir, 'state', 'state.db'));
  try {
    expect(Object.fromEntries(db.listSites().map((s) => [s.id, s.backend]))).toEqual({ 'site-a': 'tensorflow', 'site-b': expectedB });
  } finally {
    db.close();
  }
}, 300_000);
