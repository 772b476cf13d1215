/**
 * `patchfed bench surface-metrics [--shape X,Y,Z]`
 *
 * Time of evaluateSegmentation (Dice, HD95, NSD) on one case of the real MSD brain size
 * (240×240×155, 1 mm) holding a large structure (a ball of radius 60 voxels, the prediction
 * shifted by 3) and a small one (radius 10, shifted by 1), and of one exact distance transform of
 * the whole volume — the worst case, a structure spanning it.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Command } from 'commander';
import { parseShapeOption } from '../../main.ts';

export function register(bench: Command): void {
  bench
    .command('surface-metrics')
    .description('Dice / HD95 / NSD on a 240×240×155 case, and one whole-volume exact distance transform.')
    .option('--shape <X,Y,Z>', 'volume shape (default 240,240,155)', parseShapeOption('--shape'), [240, 240, 155])
    .action(async (opts: { shape: number[] }) => {
      const { evaluateSegmentation } = await import('../../../site-agent/metrics/segmentation-metrics.ts');
      const { squaredDistanceToFeatures } = await import('../../../site-agent/metrics/distance-transform.ts');
      const [X, Y, Z] = opts.shape as [number, number, number];
      // Row-major [Z, Y, X], as a NIfTI volume is passed (x fastest).
      const shape = [Z, Y, X] as const;
      const pred = new Uint8Array(X * Y * Z);
      const label = new Uint8Array(X * Y * Z);
      const c = [Z / 2, Y / 2, X / 2];
      const r = Math.min(60, Math.floor(Math.min(X, Y, Z) / 2) - 4);
      for (let k = 0, p = 0; k < Z; k++) {
        for (let j = 0; j < Y; j++) {
          for (let i = 0; i < X; i++, p++) {
            if ((k - c[0]!) ** 2 + (j - c[1]!) ** 2 + (i - c[2]!) ** 2 < r * r) label[p] = 1;
            if ((k - c[0]!) ** 2 + (j - c[1]! - 3) ** 2 + (i - c[2]!) ** 2 < (r - 2) ** 2) pred[p] = 1;
            if ((k - 12) ** 2 + (j - 14) ** 2 + (i - 14) ** 2 < 100) label[p] = 2;
            if ((k - 12) ** 2 + (j - 15) ** 2 + (i - 14) ** 2 < 100) pred[p] = 2;
          }
        }
      }
      const t0 = performance.now();
      const metrics = evaluateSegmentation(pred, label, shape, [1, 1, 1], [1, 2], { nsdToleranceMm: 1 });
      const t1 = performance.now();
      squaredDistanceToFeatures(label, shape, [1, 1, 1]);
      const t2 = performance.now();
      for (const m of metrics) {
        process.stdout.write(`class ${m.label}: ${m.labelVoxels} label voxels, ${m.labelSurfaceVoxels} surface; Dice ${m.dice.toFixed(3)}, HD95 ${m.hd95.toFixed(2)} mm, NSD ${m.nsd.toFixed(3)}\n`);
      }
      process.stdout.write(`evaluateSegmentation on ${X}×${Y}×${Z}: ${((t1 - t0) / 1000).toFixed(2)} s; one whole-volume exact EDT: ${((t2 - t1) / 1000).toFixed(2)} s\n`);
    });
}
