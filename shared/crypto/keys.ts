/**
 * Long-term identity of a site or the coordinator: an X25519 pair (nacl.box) to encrypt
 * updates and an Ed25519 pair (nacl.sign) to sign them. Stored as two JSON files:
 * `<prefix>.key` (secret, mode 0600) and `<prefix>.pub` (public, shared at enrolment).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { z } from 'zod';
import { PatchFedError } from '../errors.ts';
import { bytesEqual, fromBase64, sha256, toBase64, toHex, transcript } from './encoding.ts';

export const KEY_FILE_VERSION = 1;
export const BOX_PUBLIC_KEY_BYTES = nacl.box.publicKeyLength; // 32
export const BOX_SECRET_KEY_BYTES = nacl.box.secretKeyLength; // 32
export const SIGN_PUBLIC_KEY_BYTES = nacl.sign.publicKeyLength; // 32
export const SIGN_SECRET_KEY_BYTES = nacl.sign.secretKeyLength; // 64
/** Key files are a few hundred bytes; anything bigger is not one of ours. */
const MAX_KEY_FILE_BYTES = 16 * 1024;

export interface PublicKeys {
  boxPublicKey: Uint8Array;
  signPublicKey: Uint8Array;
}

export interface KeyPairs extends PublicKeys {
  boxSecretKey: Uint8Array;
  signSecretKey: Uint8Array;
}

export function generateKeyPairs(): KeyPairs {
  const box = nacl.box.keyPair();
  const sign = nacl.sign.keyPair();
  return { boxPublicKey: box.publicKey, boxSecretKey: box.secretKey, signPublicKey: sign.publicKey, signSecretKey: sign.secretKey };
}

export function publicKeysOf(keys: PublicKeys): PublicKeys {
  return { boxPublicKey: keys.boxPublicKey, signPublicKey: keys.signPublicKey };
}

/** Short, human-comparable identifier of a public identity, e.g. "3f2a:91bc:0d4e:77aa". */
export function fingerprint(keys: PublicKeys): string {
  const hex = toHex(sha256(transcript('patchfed-fingerprint-v1', keys.boxPublicKey, keys.signPublicKey))).slice(0, 16);
  return hex.match(/.{4}/g)!.join(':');
}

export function samePublicKeys(a: PublicKeys, b: PublicKeys): boolean {
  return bytesEqual(a.boxPublicKey, b.boxPublicKey) && bytesEqual(a.signPublicKey, b.signPublicKey);
}

export function keyFilePaths(prefix: string): { secretPath: string; publicPath: string } {
  return { secretPath: `${prefix}.key`, publicPath: `${prefix}.pub` };
}

// ---- serialisation ----

const secretFileSchema = z.strictObject({
  version: z.literal(KEY_FILE_VERSION),
  boxSecretKey: z.string().max(200),
  signSecretKey: z.string().max(200),
});

const publicFileSchema = z.strictObject({
  version: z.literal(KEY_FILE_VERSION),
  boxPublicKey: z.string().max(200),
  signPublicKey: z.string().max(200),
  fingerprint: z.string().max(64),
});

export function serializeSecretKeys(keys: KeyPairs): string {
  return JSON.stringify({ version: KEY_FILE_VERSION, boxSecretKey: toBase64(keys.boxSecretKey), signSecretKey: toBase64(keys.signSecretKey) }, null, 2) + '\n';
}

export function serializePublicKeys(keys: PublicKeys): string {
  return (
    JSON.stringify(
      { version: KEY_FILE_VERSION, boxPublicKey: toBase64(keys.boxPublicKey), signPublicKey: toBase64(keys.signPublicKey), fingerprint: fingerprint(keys) },
      null,
      2,
    ) + '\n'
  );
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new PatchFedError('bad-key-file', `${source} is not valid JSON; expected a PatchFed key file (make one with 'patchfed keygen').`, { subject: source });
  }
}

function schemaError(source: string, error: z.ZodError): PatchFedError {
  const issue = error.issues[0]!; // zod: a failed parse has at least one issue
  const where = issue.path.length ? issue.path.join('.') : '(top level)';
  return new PatchFedError('bad-key-file', `${source}: ${where}: ${issue.message}.`, { subject: source });
}

/** Parses secret key JSON and re-derives both public keys, so a corrupted file cannot load. */
export function parseSecretKeys(text: string, source: string): KeyPairs {
  const parsed = secretFileSchema.safeParse(parseJson(text, source));
  if (!parsed.success) throw schemaError(source, parsed.error);
  const boxSecretKey = fromBase64(parsed.data.boxSecretKey, `${source}: boxSecretKey`, BOX_SECRET_KEY_BYTES);
  const signSecretKey = fromBase64(parsed.data.signSecretKey, `${source}: signSecretKey`, SIGN_SECRET_KEY_BYTES);
  // An Ed25519 secret key is seed || public key; the halves must agree.
  const signPair = nacl.sign.keyPair.fromSeed(signSecretKey.subarray(0, 32));
  if (!bytesEqual(signPair.publicKey, signSecretKey.subarray(32))) {
    throw new PatchFedError('bad-key-file', `${source}: signSecretKey is corrupted (its public half does not match its seed).`, { subject: source });
  }
  return { boxSecretKey, boxPublicKey: nacl.box.keyPair.fromSecretKey(boxSecretKey).publicKey, signSecretKey, signPublicKey: signPair.publicKey };
}

/** Parses public key JSON (a `.pub` file or the same JSON stored at enrolment). */
export function parsePublicKeys(text: string, source: string): PublicKeys & { fingerprint: string } {
  const parsed = publicFileSchema.safeParse(parseJson(text, source));
  if (!parsed.success) throw schemaError(source, parsed.error);
  const keys = {
    boxPublicKey: fromBase64(parsed.data.boxPublicKey, `${source}: boxPublicKey`, BOX_PUBLIC_KEY_BYTES),
    signPublicKey: fromBase64(parsed.data.signPublicKey, `${source}: signPublicKey`, SIGN_PUBLIC_KEY_BYTES),
  };
  const fp = fingerprint(keys);
  if (fp !== parsed.data.fingerprint) {
    throw new PatchFedError('bad-key-file', `${source}: fingerprint ${parsed.data.fingerprint} does not match the keys (${fp}); the file was edited or corrupted.`, { subject: source });
  }
  return { ...keys, fingerprint: fp };
}

// ---- files ----

function readSmallFile(file: string, what: string, checkMode: boolean): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by this user' : `cannot be opened (${code})`;
    throw new PatchFedError('key-file-unreadable', `${what} ${file} ${reason}.`, { subject: file, cause: e });
  }
  try {
    // fstat the opened descriptor, so the checks apply to exactly what we read.
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new PatchFedError('bad-key-file', `${what} ${file} is not a regular file.`, { subject: file });
    if (checkMode && process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new PatchFedError(
        'key-file-permissions',
        `${what} ${file} is readable or writable by group/others (mode ${mode}); a secret key must be private to its owner. Fix with: chmod 600 ${file}`,
        { subject: file },
      );
    }
    if (st.size > MAX_KEY_FILE_BYTES) {
      throw new PatchFedError('bad-key-file', `${what} ${file} is ${st.size} bytes; a PatchFed key file is under ${MAX_KEY_FILE_BYTES} bytes.`, { subject: file });
    }
    const buf = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** Loads `<prefix>.key`; refuses files that group or others can access. */
export function loadSecretKeyFile(file: string): KeyPairs {
  return parseSecretKeys(readSmallFile(file, 'Secret key file', true), file);
}

export function loadPublicKeyFile(file: string): PublicKeys & { fingerprint: string } {
  return parsePublicKeys(readSmallFile(file, 'Public key file', false), file);
}

/** Creates `file` exclusively (fails if anything, even a dangling symlink, is there). */
function writeExclusive(file: string, text: string, mode: number): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    fs.fchmodSync(fd, mode); // the umask may have removed bits we want (it cannot add any)
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a fresh temp file next to `file` and renames it over: readers never see half a key. */
function replaceAtomically(file: string, text: string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${toHex(nacl.randomBytes(6))}.tmp`);
  writeExclusive(tmp, text, mode);
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

export interface WrittenKeyFiles {
  secretPath: string;
  publicPath: string;
  fingerprint: string;
}

/**
 * Writes `<prefix>.key` (0600) and `<prefix>.pub` (0644). Without `force`, refuses if either
 * exists, and never leaves one file without the other.
 */
export function writeKeyFiles(prefix: string, keys: KeyPairs, options: { force?: boolean } = {}): WrittenKeyFiles {
  const { secretPath, publicPath } = keyFilePaths(prefix);
  const dir = path.dirname(path.resolve(secretPath));
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new PatchFedError('key-dir-missing', `Cannot write keys to ${secretPath}: directory ${dir} does not exist.`, { subject: dir });
  }
  const wrap = (file: string, e: unknown): PatchFedError => {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      return new PatchFedError('key-file-exists', `${file} already exists; refusing to overwrite a key (use --force to replace it).`, { subject: file, cause: e });
    }
    return new PatchFedError('key-file-write', `Cannot write ${file}: ${(e as Error).message}`, { subject: file, cause: e });
  };
  const secretText = serializeSecretKeys(keys);
  const publicText = serializePublicKeys(keys);
  if (options.force) {
    for (const [file, text, mode] of [[secretPath, secretText, 0o600], [publicPath, publicText, 0o644]] as const) {
      try {
        replaceAtomically(file, text, mode);
      } catch (e) {
        throw wrap(file, e);
      }
    }
  } else {
    for (const file of [secretPath, publicPath]) {
      if (fs.existsSync(file) || isSymlink(file)) throw wrap(file, Object.assign(new Error('exists'), { code: 'EEXIST' }));
    }
    try {
      writeExclusive(secretPath, secretText, 0o600);
    } catch (e) {
      throw wrap(secretPath, e);
    }
    try {
      writeExclusive(publicPath, publicText, 0o644);
    } catch (e) {
      fs.rmSync(secretPath, { force: true }); // we created it a moment ago: do not leave half a pair
      throw wrap(publicPath, e);
    }
  }
  return { secretPath, publicPath, fingerprint: fingerprint(keys) };
}

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
