import { z } from 'zod';

/** The three modes of the thesis (§2.2): one U-Net class, three data pipelines. */
export const ModeSchema = z.enum(['full', 'patch', 'cascade']);
export type Mode = z.infer<typeof ModeSchema>;

export const NormSchema = z.enum(['batch', 'instance']);
export type Norm = z.infer<typeof NormSchema>;

/** Named architectures; `thesis` is §2.2.1 (32→512 channels). CPU presets use the same code. */
export const MODEL_PRESETS = {
  tiny: { base: 4, depth: 2 },
  'cpu-small': { base: 8, depth: 3 },
  'cpu-medium': { base: 16, depth: 4 },
  thesis: { base: 32, depth: 5 },
} as const;
export type PresetName = keyof typeof MODEL_PRESETS;
export const PresetSchema = z.enum(Object.keys(MODEL_PRESETS) as [PresetName, ...PresetName[]]);

export const ModelSpecSchema = z
  .object({
    mode: ModeSchema.default('patch'),
    preset: PresetSchema.optional(),
    base: z.number().int().min(1).max(256).optional(),
    depth: z.number().int().min(1).max(7).optional(),
    norm: NormSchema.default('instance'),
    /** Cascade stage-1 downsampling factor (thesis: 0.3 brain, 0.2 liver). */
    cascadeFactor: z.number().gt(0).lte(1).default(0.5),
  })
  .strict();
export type ModelSpec = z.infer<typeof ModelSpecSchema>;

export interface Architecture {
  base: number;
  depth: number;
  norm: Norm;
}

/** Preset first, explicit base/depth override it; default is the small CPU preset. */
export function resolveArchitecture(spec: Pick<ModelSpec, 'preset' | 'base' | 'depth' | 'norm'>): Architecture {
  const preset = MODEL_PRESETS[spec.preset ?? 'cpu-small'];
  return { base: spec.base ?? preset.base, depth: spec.depth ?? preset.depth, norm: spec.norm };
}
