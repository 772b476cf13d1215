/**
 * The dependency rules of docs/architecture.md, checked with dependency-cruiser over the real
 * tree, plus a small tree that breaks each rule, so a broken config cannot pass silently.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const DEPCRUISE = join(ROOT, 'node_modules', '.bin', 'depcruise');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');

interface Violation {
  rule: { name: string; severity: string };
  from: string;
  to: string;
}

async function cruise(cwd: string, dirs: string[]): Promise<Violation[]> {
  const { stdout } = await run(DEPCRUISE, ['--config', CONFIG, '--output-type', 'json', ...dirs], { cwd, maxBuffer: 64 * 1024 * 1024 }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  const result = JSON.parse(stdout) as { summary: { violations: Violation[] } };
  return result.summary.violations;
}

const scratch = mkdtempSync(join(tmpdir(), 'patchfed-arch-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('architecture rules (dependency-cruiser)', () => {
  it('hold for the whole tree, dynamic imports included', async () => {
    const errors = (await cruise(ROOT, ['coordinator', 'site-agent', 'shared', 'cli', 'bench'])).filter((v) => v.rule.severity === 'error');
    expect(errors.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`)).toEqual([]);
  }, 180_000);

  it('catch each kind of violation in a tree that breaks them', async () => {
    const files: Record<string, string> = {
      'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowImportingTsExtensions: true, noEmit: true } }),
      'coordinator/server.ts': "export async function load() { return import('../site-agent/train.ts'); }\n",
      'site-agent/train.ts': "import { x } from '../coordinator/util.ts';\nexport const y = x;\n",
      'coordinator/util.ts': 'export const x = 1;\n',
      'shared/codec.ts': "import { y } from '../site-agent/train.ts';\nexport const z = y;\n",
      'site-agent/cli-user.ts': "import { main } from '../cli/main.ts';\nexport const m = main;\n",
      'cli/main.ts': 'export function main() {}\n',
      'cli/pooled.ts': "import { trainSiteLocally } from '../site-agent/run/train-site.ts';\nimport { ProgressReporter } from '../site-agent/train/progress.ts';\nexport const t = [trainSiteLocally, ProgressReporter];\n",
      'site-agent/run/train-site.ts': 'export function trainSiteLocally() {}\n',
      'site-agent/train/progress.ts': 'export class ProgressReporter {}\n',
      'coordinator/tensors.ts': "import * as tf from '@tensorflow/tfjs-core';\nexport const t = tf;\n",
    };
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(dirname(join(scratch, name)), { recursive: true });
      writeFileSync(join(scratch, name), text);
    }
    const found = (await cruise(scratch, ['coordinator', 'site-agent', 'shared', 'cli'])).map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
    expect(found).toEqual(
      expect.arrayContaining([
        'coordinator-not-site-agent: coordinator/server.ts → site-agent/train.ts',
        'site-agent-not-coordinator: site-agent/train.ts → coordinator/util.ts',
        'shared-is-shared: shared/codec.ts → site-agent/train.ts',
        'libraries-not-cli: site-agent/cli-user.ts → cli/main.ts',
        'coordinator-without-tensors: coordinator/tensors.ts → @tensorflow/tfjs-core',
        'cli-through-site-agent-entry-points: cli/pooled.ts → site-agent/run/train-site.ts',
      ]),
    );
    // The progress reporter is an entry point the CLI may hand in.
    expect(found).not.toContain('cli-through-site-agent-entry-points: cli/pooled.ts → site-agent/train/progress.ts');
  }, 180_000);
});
