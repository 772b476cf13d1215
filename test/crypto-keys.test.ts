import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import {
  fingerprint,
  generateKeyPairs,
  loadPublicKeyFile,
  loadSecretKeyFile,
  parseSecretKeys,
  publicKeysOf,
  samePublicKeys,
  serializeSecretKeys,
  writeKeyFiles,
} from '../shared/crypto/keys.ts';

const root = mkdtempSync(path.join(tmpdir(), 'patchfed-keys-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const prefix = () => path.join(root, `k${n++}`);

function expectPatchFedError(fn: () => unknown, code: string, ...fragments: (string | RegExp)[]): PatchFedError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected PatchFedError ${code}`).toBeInstanceOf(PatchFedError);
  const err = caught as PatchFedError;
  expect(err.code).toBe(code);
  for (const f of fragments) expect(err.message).toMatch(f);
  return err;
}

describe('key files', () => {
  it('writes a 0600 secret and a 0644 public file that load back to the same keys', () => {
    const p = prefix();
    const keys = generateKeyPairs();
    const written = writeKeyFiles(p, keys);
    expect(statSync(written.secretPath).mode & 0o777).toBe(0o600);
    expect(statSync(written.publicPath).mode & 0o777).toBe(0o644);
    const secret = loadSecretKeyFile(written.secretPath);
    expect(Buffer.from(secret.boxSecretKey)).toEqual(Buffer.from(keys.boxSecretKey));
    expect(Buffer.from(secret.signSecretKey)).toEqual(Buffer.from(keys.signSecretKey));
    // Public halves are re-derived from the secrets, not trusted from the file.
    expect(samePublicKeys(secret, keys)).toBe(true);
    const pub = loadPublicKeyFile(written.publicPath);
    expect(samePublicKeys(pub, keys)).toBe(true);
    expect(pub.fingerprint).toBe(written.fingerprint);
    expect(written.fingerprint).toMatch(/^[0-9a-f]{4}(:[0-9a-f]{4}){3}$/);
    // The public file holds no secret material.
    const pubText = readFileSync(written.publicPath, 'utf8');
    expect(pubText).not.toContain(Buffer.from(keys.boxSecretKey).toString('base64'));
    expect(Object.keys(JSON.parse(pubText)).sort()).toEqual(['boxPublicKey', 'fingerprint', 'signPublicKey', 'version']);
  });

  it('gives different identities different fingerprints', () => {
    const a = generateKeyPairs();
    const b = generateKeyPairs();
    expect(fingerprint(a)).not.toBe(fingerprint(b));
    expect(fingerprint(publicKeysOf(a))).toBe(fingerprint(a));
  });

  it('refuses to overwrite either file without force, and replaces both with force', () => {
    const p = prefix();
    const first = writeKeyFiles(p, generateKeyPairs());
    const before = readFileSync(first.secretPath, 'utf8');
    expectPatchFedError(() => writeKeyFiles(p, generateKeyPairs()), 'key-file-exists', first.secretPath, /--force/);
    expect(readFileSync(first.secretPath, 'utf8')).toBe(before);

    // Only the .pub exists: still refused, and no lone .key is left behind.
    const q = prefix();
    writeFileSync(`${q}.pub`, 'x');
    expectPatchFedError(() => writeKeyFiles(q, generateKeyPairs()), 'key-file-exists', `${q}.pub`);
    expect(() => statSync(`${q}.key`)).toThrow(/ENOENT/);

    const second = writeKeyFiles(p, generateKeyPairs(), { force: true });
    expect(readFileSync(second.secretPath, 'utf8')).not.toBe(before);
    expect(statSync(second.secretPath).mode & 0o777).toBe(0o600);
    expect(loadPublicKeyFile(second.publicPath).fingerprint).toBe(second.fingerprint);
  });

  it('does not write through a symlink planted at the key path', () => {
    const p = prefix();
    const target = path.join(root, `target-${n}`);
    symlinkSync(target, `${p}.key`);
    expectPatchFedError(() => writeKeyFiles(p, generateKeyPairs()), 'key-file-exists');
    expect(() => statSync(target)).toThrow(/ENOENT/);
  });

  it('refuses secret key files readable or writable by group or others, naming the file and the fix', () => {
    for (const mode of [0o640, 0o604, 0o620, 0o644, 0o660]) {
      const { secretPath } = writeKeyFiles(prefix(), generateKeyPairs());
      chmodSync(secretPath, mode);
      const err = expectPatchFedError(() => loadSecretKeyFile(secretPath), 'key-file-permissions', secretPath, `chmod 600 ${secretPath}`);
      expect(err.subject).toBe(secretPath);
    }
    const { secretPath } = writeKeyFiles(prefix(), generateKeyPairs());
    chmodSync(secretPath, 0o400);
    expect(() => loadSecretKeyFile(secretPath)).not.toThrow();
  });

  it('refuses missing, malformed and corrupted secret key files', () => {
    expectPatchFedError(() => loadSecretKeyFile(path.join(root, 'nope.key')), 'key-file-unreadable', /does not exist/);
    const write = (text: string) => {
      const f = path.join(root, `bad${n++}.key`);
      writeFileSync(f, text, { mode: 0o600 });
      return f;
    };
    const keys = generateKeyPairs();
    const good = JSON.parse(serializeSecretKeys(keys));
    expectPatchFedError(() => loadSecretKeyFile(write('not json')), 'bad-key-file', /not valid JSON/);
    expectPatchFedError(() => loadSecretKeyFile(write(JSON.stringify({ ...good, version: 2 }))), 'bad-key-file', /version/);
    expectPatchFedError(() => loadSecretKeyFile(write(JSON.stringify({ ...good, extra: 1 }))), 'bad-key-file');
    expectPatchFedError(() => loadSecretKeyFile(write(JSON.stringify({ ...good, boxSecretKey: Buffer.alloc(31).toString('base64') }))), 'bad-length', /boxSecretKey must be 32 bytes/);
    expectPatchFedError(() => loadSecretKeyFile(write(JSON.stringify({ ...good, signSecretKey: 'not*base64' }))), 'bad-base64', /signSecretKey/);
    // Flip one bit in the public half of the Ed25519 secret key.
    const sk = Buffer.from(keys.signSecretKey);
    sk[40]! ^= 1;
    expectPatchFedError(() => loadSecretKeyFile(write(JSON.stringify({ ...good, signSecretKey: sk.toString('base64') }))), 'bad-key-file', /corrupted/);
    expectPatchFedError(() => loadSecretKeyFile(write('x'.repeat(20_000))), 'bad-key-file', /bytes/);
    expectPatchFedError(() => loadSecretKeyFile(root), 'bad-key-file', /not a regular file/);
    expect(samePublicKeys(parseSecretKeys(JSON.stringify(good), 'inline'), keys)).toBe(true);
  });

  it('refuses a public key file whose fingerprint does not match its keys', () => {
    const { publicPath } = writeKeyFiles(prefix(), generateKeyPairs());
    const json = JSON.parse(readFileSync(publicPath, 'utf8'));
    json.signPublicKey = Buffer.from(generateKeyPairs().signPublicKey).toString('base64');
    writeFileSync(publicPath, JSON.stringify(json));
    expectPatchFedError(() => loadPublicKeyFile(publicPath), 'bad-key-file', /fingerprint/, publicPath);
  });
});
