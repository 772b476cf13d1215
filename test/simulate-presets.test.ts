import { describe, expect, it } from 'vitest';
import { MODEL_PRESETS, ModeSchema, type PresetName } from '../shared/config/model.ts';
import { SIMULATE_DEFAULTS, presetDefaults } from '../cli/simulate/options.ts';

/** Voxels per sample at the U-Net's bottom when a stage sees `shape` × `scale` (depth − 1 halvings). */
function bottomVoxels(shape: readonly number[], scale: number, depth: number): number {
  return shape.map((d) => Math.floor((Math.round(d * scale)) / 2 ** (depth - 1))).reduce((p, d) => p * d, 1);
}

describe('simulate presets', () => {
  // Instance normalisation needs more than one voxel per sample at every level (a 32³ thesis
  // cascade left stage 1 with 1³ at the bottom and every site declined the round).
  for (const preset of Object.keys(MODEL_PRESETS) as PresetName[]) {
    for (const mode of ModeSchema.options) {
      it(`${preset} / ${mode}: the default volume leaves more than one voxel at the bottom of every stage`, () => {
        const shape = presetDefaults(preset, mode).shape ?? SIMULATE_DEFAULTS.shape;
        const { depth } = MODEL_PRESETS[preset];
        const scales = mode === 'cascade' ? [0.5, 1] : [1]; // stage 1 at the default cascade factor, then full resolution
        for (const scale of scales) expect(bottomVoxels(shape, scale, depth)).toBeGreaterThan(1);
      });
    }
  }
});
