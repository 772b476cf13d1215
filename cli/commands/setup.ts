/**
 * `patchfed setup tensorflow [--gpu] [--tf-version V] [--cache-dir DIR] [--force]`
 *
 * Opt-in: builds the 'tensorflow' compute backend (@tensorflow/tfjs-node, or -gpu) against the
 * TensorFlow C library of the pinned pip wheel, so `--backend auto|tensorflow` can use it.
 * `npm install` never runs tfjs-node's own download script (package.json allowScripts), so this
 * is the way to get the backend; the work is in site-agent/backend/tensorflow-setup/.
 * Exit 0 when set up (or already set up), 1 when something it needs is missing, 2 on bad options.
 */
import type { Command } from 'commander';
import { CliError } from '../main.ts';

interface TensorflowSetupOptions {
  gpu?: boolean;
  tfVersion?: string;
  cacheDir?: string;
  force?: boolean;
}

export function register(program: Command): void {
  const setup = program
    .command('setup')
    .description('Optional compute backends that npm install does not build (run once per checkout, again after npm ci).');
  setup
    .command('tensorflow')
    .description(
      "Build the 'tensorflow' backend: download the TensorFlow wheel with pip, put its C library into @tensorflow/tfjs-node's deps/,\n" +
        'build the binding from source against it, and smoke-test it. Idempotent; the library is cached outside the checkout.',
    )
    .option('--gpu', 'set up @tensorflow/tfjs-node-gpu with the GPU wheel and the CUDA 12 / cuDNN pip packages (UNTESTED: no GPU here)')
    .option('--tf-version <version>', 'TensorFlow wheel version (default 2.21.0, the one verified)')
    .option('--cache-dir <dir>', 'where wheels and the extracted library go (default $PATCHFED_CACHE_DIR, else ~/.cache/patchfed)')
    .option('--force', 'rebuild even when already set up')
    .action(async (opts: TensorflowSetupOptions) => {
      const { DEFAULT_TENSORFLOW_VERSION, defaultCacheDir, parseTensorflowVersion } = await import('../../site-agent/backend/tensorflow-setup/options.ts');
      const { isPatchFedError } = await import('../../shared/errors.ts');
      let tensorflowVersion: string;
      try {
        tensorflowVersion = parseTensorflowVersion(opts.tfVersion ?? DEFAULT_TENSORFLOW_VERSION);
      } catch (e) {
        throw new CliError(isPatchFedError(e) ? e.message : String(e));
      }
      if (opts.cacheDir !== undefined && opts.cacheDir.trim() === '') throw new CliError('--cache-dir must not be empty.');
      const path = await import('node:path');
      const cacheDir = opts.cacheDir ? path.resolve(opts.cacheDir) : defaultCacheDir();
      const { defaultSetupDeps, runTensorflowSetup } = await import('../../site-agent/backend/tensorflow-setup/setup.ts');
      const options = { variant: opts.gpu ? ('gpu' as const) : ('cpu' as const), tensorflowVersion, cacheDir, force: opts.force === true };
      let result: ReturnType<typeof runTensorflowSetup>;
      try {
        result = runTensorflowSetup(options, defaultSetupDeps((line) => process.stdout.write(`${line}\n`)));
      } catch (e) {
        // A cache inside the checkout is a bad option (exit 2); everything else is the environment (exit 1).
        if (isPatchFedError(e) && e.code === 'tensorflow-setup-usage') throw new CliError(e.message);
        throw e;
      }
      const flag = result.variant.variant === 'gpu' ? ' (GPU build)' : '';
      process.stdout.write(
        `${result.alreadySetUp ? 'nothing to do' : `done in ${(result.ms / 1000).toFixed(0)} s`}: --backend tensorflow (and auto) now uses ${result.variant.packageName}${flag} on TensorFlow ${result.smoke.tensorflowVersion}\n`,
      );
      if (result.ldLibraryPath) {
        process.stdout.write(`if TensorFlow does not find CUDA or cuDNN, start PatchFed with:\n  export LD_LIBRARY_PATH=${result.ldLibraryPath}\n`);
      }
    });
  setup.commands.forEach((c) => c.exitOverride().showHelpAfterError('(run with --help for usage)'));
}
