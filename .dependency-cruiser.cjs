/**
 * PatchFed's architecture rules (docs/architecture.md), enforced by `npm test`
 * (test/architecture-rules.test.ts) with dependency-cruiser. Static imports, `import type`,
 * re-exports and dynamic import() with a literal path all count.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'coordinator-not-site-agent',
      comment: 'The coordinator never runs site code: the model contract it needs is in shared/model.',
      severity: 'error',
      from: { path: '^coordinator/' },
      to: { path: '^site-agent/' },
    },
    {
      name: 'site-agent-not-coordinator',
      comment: 'A site agent talks to the coordinator only over the protocol (shared/protocol).',
      severity: 'error',
      from: { path: '^site-agent/' },
      to: { path: '^coordinator/' },
    },
    {
      name: 'shared-is-shared',
      comment: 'shared/ is used by both parts and depends on neither (nor on the CLI).',
      severity: 'error',
      from: { path: '^shared/' },
      to: { path: '^(coordinator|site-agent|cli|bench)/' },
    },
    {
      name: 'libraries-not-cli',
      comment: 'The CLI drives the libraries; the libraries never reach back into it.',
      severity: 'error',
      from: { path: '^(coordinator|site-agent|shared)/' },
      to: { path: '^(cli|bench)/' },
    },
    {
      name: 'cli-through-site-agent-entry-points',
      comment:
        'The CLI drives site training through site-agent/run entry points (local-training, federated-site, pooled-training, compare), never its building blocks: stage nets, plans, the training loop and its options are built in one place (run/train-site.ts). train/progress.ts is the progress reporter the CLI hands in.',
      severity: 'error',
      from: { path: '^cli/' },
      to: { path: '^site-agent/(run/(nets|site-plan|train-site|training-state)\\.ts$|train/(?!progress\\.ts$)|pipeline/)' },
    },
    {
      name: 'coordinator-without-tensors',
      comment: 'The coordinator averages float arrays; it never loads tfjs (memory, start-up time, attack surface).',
      severity: 'error',
      from: { path: '^(coordinator|shared)/' },
      to: { path: '(^|/)node_modules/@tensorflow/|^@tensorflow/' },
    },
    {
      name: 'no-test-code-in-product',
      comment: 'Product code does not import tests or their fixtures.',
      severity: 'error',
      from: { pathNot: '^test/' },
      to: { path: '^test/' },
    },
    {
      name: 'no-import-cycles',
      comment: 'Import cycles make modules impossible to read or test alone; reported, to be broken up.',
      severity: 'warn',
      from: { path: '^(coordinator|site-agent|shared)/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|runs|test-output|\\.git)/|site-agent/kernels/native/build/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'] },
    moduleSystems: ['es6', 'cjs'],
  },
};
