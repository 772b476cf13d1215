/**
 * `patchfed bench kernels [--json FILE] [--quick]`
 *
 * Stock cpu, stock wasm (forward only), the native 'cpu-fast' kernels and — when `patchfed setup
 * tensorflow` built it — the 'tensorflow' backend side by side in one process: Conv3D forward and
 * both backprops, and a full U-Net training step for every preset and the base-32 stage, with
 * effective GFLOP/s, speed-ups, each backend's gradient error against stock cpu and a per-kernel
 * profile of a cpu-fast step. Exit 1 when the native kernels are not built.
 */
import type { Command } from 'commander';

interface KernelsOptions {
  json?: string;
  quick?: boolean;
  stageCpu?: boolean;
}

export function register(bench: Command): void {
  bench
    .command('kernels')
    .description('Conv3D kernels and U-Net training steps: stock cpu vs stock wasm vs native cpu-fast vs tensorflow (when set up), in one run.')
    .option('--json <file>', 'also write the full report (timings, speed-ups, gradient error, profile) as JSON')
    .option('--quick', 'fewer shapes and repetitions (CPU-small preset only, about a minute)')
    .option('--stage-cpu', "also run the base-32 stage's training step on stock cpu for its ratio (minutes: off by default)")
    .action(async (opts: KernelsOptions) => {
      const { formatProfile, runKernelBench, writeJsonReport } = await import('../../../bench/kernels.ts');
      const report = await runKernelBench({ quick: opts.quick, stageVsCpu: opts.stageCpu, log: (line) => process.stdout.write(`${line}\n`) });
      for (const profile of report.profiles) process.stdout.write(`${formatProfile(profile)}\n`);
      const speedup = report.trainStepSpeedupVsCpu;
      process.stdout.write(
        `summary: training step ×${speedup === null ? '?' : speedup.toFixed(1)} vs stock cpu (cpu-small, ${report.trainSteps[0]?.patch.join('×') ?? ''}); ` +
          `max gradient rel. error ${report.maxGradRelError?.toExponential(2) ?? '?'}; ${report.fastCpu.threads} threads; ` +
          `tensorflow: ${report.tensorflow.available ? `${report.tensorflow.package} ${report.tensorflow.version}, max gradient rel. error ${report.tensorflowMaxGradRelError?.toExponential(2) ?? '?'}` : 'not set up (npx patchfed setup tensorflow)'}; ` +
          `load average ${report.machine.loadAverageStart.map((l) => l.toFixed(1)).join('/')} at start, ` +
          `${report.machine.loadAverageEnd.map((l) => l.toFixed(1)).join('/')} at end\n`,
      );
      if (opts.json) {
        await writeJsonReport(opts.json, report);
        process.stdout.write(`wrote ${opts.json}\n`);
      }
    });
}
