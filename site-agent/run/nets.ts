/**
 * The tfjs networks of a site's mode — one U-Net, or two for the cascade — and their weights as
 * ONE flat named list for the federation, laid out exactly as shared/model's layoutManifest
 * (cascade tensors prefixed "stage1/" and "stage2/"), initialised with the same stage seeds.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { Architecture } from '../../shared/config/model.ts';
import { stagePrefix, stageSeed } from '../../shared/model/index.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { UNet3D } from '../model/unet.ts';
import type { StageSetup } from './site-plan.ts';

export interface StageNet {
  setup: StageSetup;
  net: UNet3D;
}

export function createStageNets(stages: readonly StageSetup[], arch: Architecture, numClasses: number, seed: number): StageNet[] {
  return stages.map((setup, i) => ({
    setup,
    net: new UNet3D({ inChannels: setup.inChannels, numClasses, base: arch.base, depth: arch.depth, norm: arch.norm, seed: stageSeed(seed, i) }),
  }));
}

export function disposeStageNets(nets: readonly StageNet[]): void {
  for (const n of nets) n.net.dispose();
}

export function combinedWeights(nets: readonly StageNet[]): NamedWeights {
  const out: NamedWeights = { manifest: [], values: [] };
  for (const { setup, net } of nets) {
    const w = net.getWeights();
    const p = stagePrefix(setup.stage);
    out.manifest.push(...w.manifest.map((s) => ({ ...s, name: p + s.name })));
    out.values.push(...w.values);
  }
  return out;
}

/**
 * Loads a combined list into the stage nets. `keepLocal` names tensors to leave untouched
 * (FedBN keeps normalisation local).
 */
export function setCombinedWeights(nets: readonly StageNet[], weights: NamedWeights, keepLocal?: (name: string) => boolean): void {
  const index = new Map(weights.manifest.map((s, i) => [s.name, i]));
  for (const { setup, net } of nets) {
    const own = net.getWeights();
    const p = stagePrefix(setup.stage);
    const values = own.manifest.map((s, k) => {
      const name = p + s.name;
      const mine = own.values[k];
      if (keepLocal?.(name) && mine) return mine;
      const i = index.get(name);
      const theirs = i === undefined ? undefined : weights.values[i];
      if (theirs === undefined) throw new PatchFedError('E_WEIGHTS', `weights have no tensor '${name}' (model mismatch)`);
      return theirs;
    });
    net.setWeights({ manifest: own.manifest, values });
  }
}

/** The stage-net slices of a combined list (e.g. the global model FedProx pulls towards), by name. */
export function stageSlices(nets: readonly StageNet[], weights: NamedWeights): NamedWeights[] {
  const index = new Map(weights.manifest.map((s, i) => [s.name, i]));
  return nets.map((n) => {
    const manifest = n.net.manifest();
    const p = stagePrefix(n.setup.stage);
    const values = manifest.map((s) => {
      const i = index.get(p + s.name);
      const v = i === undefined ? undefined : weights.values[i];
      if (v === undefined) throw new PatchFedError('E_WEIGHTS', `weights have no tensor '${p + s.name}' (model mismatch)`);
      return v;
    });
    return { manifest, values };
  });
}
