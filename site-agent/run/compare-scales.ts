/**
 * `patchfed compare` size presets, in a module of their own so the CLI can show them in --help
 * without loading tfjs.
 */
import { THESIS_LIKE_SHAPE } from '../phantom/context.ts';

/**
 * Size presets. `thesis-like` (the default): a context phantom whose depth makes the thesis's
 * 16-voxel slab 10% of the volume (thesis: 16 of 155 slices), so a slab loses context the full
 * U-Net and the cascade's stage 1 have; `small`: the earlier 32×32×24 standard phantom, where a
 * slab covers two thirds of the depth and context barely matters.
 */
export const COMPARE_SCALES = {
  'thesis-like': {
    shape: [...THESIS_LIKE_SHAPE] as [number, number, number],
    context: true,
    cases: 40,
    steps: 400,
    siteStyle: 0,
    base: 8,
    depth: 4,
    foregroundRate: 0.33,
  },
  small: { shape: [32, 32, 24] as [number, number, number], context: false, cases: 20, steps: 300, siteStyle: 2, base: 8, depth: 3, foregroundRate: 1 },
} as const;
export type CompareScale = keyof typeof COMPARE_SCALES;

/** One line per preset for --help. */
export function describeScale(name: CompareScale): string {
  const s = COMPARE_SCALES[name];
  return `${s.shape.join('×')} ${s.context ? 'context' : 'standard'} phantom, ${s.cases} cases, ${s.steps} steps, U-Net base ${s.base} depth ${s.depth}, foreground rate ${s.foregroundRate}, site style ${s.siteStyle}`;
}
