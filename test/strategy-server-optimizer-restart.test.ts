/**
 * Server optimisers in real federated rounds: FedAdam, FedYogi and FedAvgM keep their moments in
 * every checkpoint (server-optimizer.json + meta.json extra.serverOptimizer), and a coordinator
 * restarted from its state directory continues bit-identically to an uninterrupted run — the
 * moments are read back, not restarted from zero (which gives a different model, checked too).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import type { ServerOptimizerName } from '../shared/config/strategy.ts';
import type { CoordinatorConfig } from '../shared/config/coordinator.ts';
import { fakeInitialWeights, fakeManifest, makeFederation, startSite, testLog, type Federation, type TestSite } from './federation-fixtures.ts';

const MANIFEST = fakeManifest(3000);

let feds: Federation[] = [];
let coordinator: RunningCoordinator | null = null;
let sites: TestSite[] = [];

async function stopAll(): Promise<void> {
  await Promise.all(sites.map((s) => s.client.stop()));
  await coordinator?.stop();
  coordinator = null;
  sites = [];
}

afterEach(async () => {
  await stopAll();
  for (const f of feds) f.cleanup();
  feds = [];
});

/** Runs the experiment in `fed` (its state directory) up to `rounds`, from wherever it stands; returns the final checkpoint. */
async function runUpTo(fed: Federation, rounds: number) {
  const config: CoordinatorConfig = { ...fed.config, experiment: { ...fed.config.experiment, rounds } };
  coordinator = await startCoordinator(config, { baseDir: fed.dir, initialWeights: () => fakeInitialWeights(MANIFEST), log: testLog() });
  sites = [...fed.siteKeys.keys()].map((id) => startSite(fed, coordinator!.url, id));
  expect(await coordinator.finished).toMatchObject({ kind: 'complete', round: rounds });
  const final = await coordinator.globalWeights();
  const meta = coordinator.checkpoints().find((c) => c.version === final.version);
  const stateDir = join(fed.dir, fed.config.stateDir);
  await stopAll();
  return { sha256: final.sha256, round: final.round, version: final.version, meta, stateDir };
}

function optimiserFederation(name: ServerOptimizerName, id: string): Federation {
  const fed = makeFederation({ sites: ['site-a', 'site-b'], experiment: { id, strategy: { name: 'fedavg', serverOptimizer: { name } as never } } });
  feds.push(fed);
  return fed;
}

describe('server optimiser state across a coordinator restart', () => {
  for (const name of ['fedadam', 'fedyogi', 'fedavgm'] as const) {
    it(`${name}: 3 rounds with a restart after round 2 give the same checkpoint as 3 uninterrupted rounds`, async () => {
      const straight = await runUpTo(optimiserFederation(name, `opt-${name}`), 3);

      const restartedFed = optimiserFederation(name, `opt-${name}`);
      const beforeRestart = await runUpTo(restartedFed, 2);
      expect(beforeRestart.round).toBe(2);
      const resumed = await runUpTo(restartedFed, 3);
      expect(resumed.round).toBe(3);
      // Same initial model, same deterministic site updates: only the optimiser state could differ.
      expect(resumed.sha256).toBe(straight.sha256);

      // The state is in the checkpoint: the file beside weights.pfw and its record in meta.json.
      const stored = readMeta(resumed.stateDir, resumed.version);
      expect(stored.extra.serverOptimizer).toMatchObject({ kind: name, step: 3 });
      expect(existsSync(join(dirname(artifact(resumed.stateDir, resumed.version)), 'server-optimizer.json'))).toBe(true);

      // A coordinator whose checkpoint lost the state refuses to start rather than silently restarting the moments.
      const resetFed = optimiserFederation(name, `opt-${name}`);
      await runUpTo(resetFed, 2);
      removeOptimizerState(join(resetFed.dir, resetFed.config.stateDir));
      await expect(runUpTo(resetFed, 3)).rejects.toThrow(/server-optimizer\.json is missing/);
    }, 90_000);
  }
});

function artifact(stateDir: string, version: number): string {
  return join(stateDir, 'checkpoints', `v${String(version).padStart(6, '0')}`, 'weights.pfw');
}

function readMeta(stateDir: string, version: number): { extra: Record<string, unknown> } {
  return JSON.parse(readFileSync(join(dirname(artifact(stateDir, version)), 'meta.json'), 'utf8')) as { extra: Record<string, unknown> };
}

/** Deletes the optimiser state file of every checkpoint (a coordinator that lost it). */
function removeOptimizerState(stateDir: string): void {
  for (const v of readdirSync(join(stateDir, 'checkpoints'))) rmSync(join(stateDir, 'checkpoints', v, 'server-optimizer.json'), { force: true });
}
