import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPublicKeyFile, loadSecretKeyFile, samePublicKeys } from '../shared/crypto/keys.ts';

// The real launcher in a child process: the exit code is exactly what a user's shell sees.
const CLI = fileURLToPath(new URL('../cli/patchfed.js', import.meta.url));
const TIMEOUT = 120_000;
const root = mkdtempSync(path.join(tmpdir(), 'patchfed-keygen-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function keygen(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'keygen', ...args], { timeout: TIMEOUT }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('patchfed keygen (CLI)', () => {
  it('writes a loadable pair with modes 0600/0644, refuses to overwrite (exit 1) unless --force', async () => {
    const prefix = path.join(root, 'site-a');
    const ok = await keygen('--out', prefix);
    expect(ok.code, ok.stderr).toBe(0);
    expect(statSync(`${prefix}.key`).mode & 0o777).toBe(0o600);
    expect(statSync(`${prefix}.pub`).mode & 0o777).toBe(0o644);
    const secret = loadSecretKeyFile(`${prefix}.key`);
    const pub = loadPublicKeyFile(`${prefix}.pub`);
    expect(samePublicKeys(secret, pub)).toBe(true);
    expect(ok.stdout).toContain(pub.fingerprint);

    const before = readFileSync(`${prefix}.key`, 'utf8');
    const again = await keygen('--out', prefix);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`${prefix}.key already exists`);
    expect(again.stderr).toContain('--force');
    expect(again.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(readFileSync(`${prefix}.key`, 'utf8')).toBe(before);

    const forced = await keygen('--out', prefix, '--force');
    expect(forced.code, forced.stderr).toBe(0);
    expect(readFileSync(`${prefix}.key`, 'utf8')).not.toBe(before);
    expect(statSync(`${prefix}.key`).mode & 0o777).toBe(0o600);
    expect(samePublicKeys(loadSecretKeyFile(`${prefix}.key`), loadPublicKeyFile(`${prefix}.pub`))).toBe(true);
  }, TIMEOUT);

  it('exits 2 for a missing or directory-like --out, and 1 for a missing parent directory', async () => {
    const [missing, dir, noParent] = await Promise.all([
      keygen(),
      keygen('--out', `${root}/`),
      keygen('--out', path.join(root, 'no-such-dir', 'k')),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--out');
    expect(dir.code).toBe(2);
    expect(dir.stderr).toContain('path prefix');
    expect(noParent.code).toBe(1);
    expect(noParent.stderr).toContain('does not exist');
    expect(() => statSync(path.join(root, 'no-such-dir'))).toThrow(/ENOENT/);
  }, TIMEOUT);
});
