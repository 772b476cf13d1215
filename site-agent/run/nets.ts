/**
 * The networks of a site's mode — one U-Net, or two for the cascade — and their weights as ONE
 * flat named list for the federation (cascade tensors prefixed "stage1/" and "stage2/").
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { Architecture } from '../../shared/config/model.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { UNet3D } from '../model/unet.ts';
import type { UNetStage } from '../train/loss.ts';
import type { StageSetup } from './site-plan.ts';

export interface StageNet {
  setup: StageSetup;
  net: UNet3D;
}

export function stagePrefix(stage: UNetStage): string {
  return stage === 'cascade-stage1' ? 'stage1/' : stage === 'cascade-stage2' ? 'stage2/' : '';
}

export function createStageNets(stages: readonly StageSetup[], arch: Architecture, numClasses: number, seed: number): StageNet[] {
  return stages.map((setup, i) => ({
    setup,
    net: new UNet3D({ inChannels: setup.inChannels, numClasses, base: arch.base, depth: arch.depth, norm: arch.norm, seed: seed + 1000 * i }),
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
      if (keepLocal?.(name)) return own.values[k]!;
      const i = index.get(name);
      if (i === undefined) throw new PatchFedError('E_WEIGHTS', `weights have no tensor '${name}' (model mismatch)`);
      return weights.values[i]!;
    });
    net.setWeights({ manifest: own.manifest, values });
  }
}
