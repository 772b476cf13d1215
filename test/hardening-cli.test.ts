/**
 * Issue 11, item 12 (CLI errors), on the real `patchfed` process: every usage error is one line
 * with one prefix and exit 2; a mistyped flag is named as unknown (with a suggestion), not
 * reported as a missing --config; `--version`; help shows defaults and required markers the same
 * way everywhere; the learning rate has one spelling across commands (the old `--lr` still works
 * for simulate, hidden from help). ~10 s (one process per case).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, runPatchfed } from './cli-fixtures.ts';

/** Exit 2 and exactly one stderr line `patchfed: <reason>; run '<command> --help' for usage`. */
async function usageError(args: string[], reason: RegExp): Promise<void> {
  const r = await runPatchfed(args);
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^patchfed: .*; run 'patchfed( [a-z]+)* --help' for usage$/);
  expect(lines[0]).toMatch(reason);
}

describe('CLI errors and conventions', () => {
  it('a mistyped flag is named as unknown, with a suggestion, before any missing required option', async () => {
    await usageError(['coordinator', '--confg', 'coordinator.json'], /^patchfed: unknown option '--confg' \(did you mean --config\?\); run 'patchfed coordinator --help'/);
    await usageError(['site', '--confg', 'site.json'], /unknown option '--confg' \(did you mean --config\?\)/);
  }, 60_000);

  it('missing options and arguments, bad values and unknown commands: one line, exit 2', async () => {
    await usageError(['site'], /required option '--config <file>' not specified/);
    await usageError(['inspect'], /missing required argument 'path'/);
    await usageError(['simulate', '--rounds', 'x'], /^patchfed: --rounds must be an integer, got 'x'; run 'patchfed simulate --help'/);
    await usageError(['coordinator', '--config', 'c.json', '--log-level', 'loud'], /^patchfed: --log-level 'loud' is invalid: allowed choices are debug, info, warn, error;/);
    await usageError(['nosuch'], /unknown command 'nosuch'/);
  }, 60_000);

  it('--version prints the package version', async () => {
    const r = await runPatchfed(['--version']);
    expect(r.code).toBe(0);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(pkg.version);
  }, 30_000);

  it('help marks required options and shows defaults one way; the learning rate is --learning-rate everywhere', async () => {
    const help = (await runPatchfed(['coordinator', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(/--config <file> coordinator config .*\(required\)/);
    expect(help).toMatch(/--storage-outage-limit <s> .*\(default: 600\)/);
    expect(help).toMatch(/--log-level <level> .*\(default: info\)/);
    for (const command of ['simulate', 'compare']) {
      const text = (await runPatchfed([command, '--help'])).stdout;
      expect(text, command).toMatch(/--learning-rate <lr>/);
      expect(text, command).not.toMatch(/--lr\b/);
      expect(text, command).not.toMatch(/\(default [^:]/); // always "(default: x)"
    }
  }, 60_000);
});
