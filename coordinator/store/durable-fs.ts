/**
 * Crash-safe file primitives. A file is durable once its data is fsynced AND the directory entry
 * pointing at it is fsynced; rename(2) within one directory is atomic, so readers see the old
 * content or the new, never a mix. All calls go through a FileIO so tests can inject failures
 * such as a full disk.
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';

export interface FileIO {
  openSync(path: string, flags: string, mode?: number): number;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  mkdirSync(path: string): void;
  rmSync(path: string): void;
}

export const nodeFileIO: FileIO = {
  openSync: (p, flags, mode) => fs.openSync(p, flags, mode),
  writeSync: (fd, buf, off, len) => fs.writeSync(fd, buf, off, len),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  closeSync: (fd) => fs.closeSync(fd),
  renameSync: (a, b) => fs.renameSync(a, b),
  mkdirSync: (p) => fs.mkdirSync(p),
  rmSync: (p) => fs.rmSync(p, { recursive: true, force: true }),
};

export function withDefaults(io?: Partial<FileIO>): FileIO {
  return { ...nodeFileIO, ...io };
}

/** Writes all bytes to a new file and fsyncs it (fails if the file exists). */
export function writeFileDurable(io: FileIO, path: string, bytes: Uint8Array): void {
  const fd = io.openSync(path, 'wx', 0o644);
  try {
    let done = 0;
    while (done < bytes.length) {
      const n = io.writeSync(fd, bytes, done, bytes.length - done);
      if (n <= 0) throw new Error(`write to ${path} made no progress`);
      done += n;
    }
    io.fsyncSync(fd);
  } finally {
    io.closeSync(fd);
  }
}

/** fsync a directory so entries created, renamed or removed in it survive a power loss. */
export function fsyncDir(io: FileIO, dir: string): void {
  let fd: number;
  try {
    fd = io.openSync(dir, 'r');
  } catch (e) {
    // Some platforms (Windows) cannot open directories; there rename durability is the OS's job.
    if (isCode(e, 'EISDIR', 'EPERM', 'EACCES')) return;
    throw e;
  }
  try {
    io.fsyncSync(fd);
  } catch (e) {
    if (!isCode(e, 'EINVAL', 'EISDIR', 'EPERM', 'EBADF')) throw e;
  } finally {
    io.closeSync(fd);
  }
}

/** Prefix of every temporary file/dir we create, so recovery can find and delete leftovers. */
export const TEMP_PREFIX = '.tmp-';

export function tempName(finalName: string): string {
  return `${TEMP_PREFIX}${finalName}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Replace (or create) `path` atomically: temp file in the same dir, fsync, rename, fsync dir. */
export function writeFileAtomic(io: FileIO, path: string, bytes: Uint8Array): void {
  const dir = dirname(path);
  const tmp = join(dir, tempName(basename(path)));
  try {
    writeFileDurable(io, tmp, bytes);
    io.renameSync(tmp, path);
  } catch (e) {
    removeQuietly(io, tmp);
    throw e;
  }
  fsyncDir(io, dir);
}

export function removeQuietly(io: FileIO, path: string): void {
  try {
    io.rmSync(path);
  } catch {
    // Best effort: the caller is already reporting the original error; recovery sweeps leftovers.
  }
}

export function isCode(e: unknown, ...codes: string[]): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && codes.includes(code);
}

/** A filesystem error as a PatchFedError whose message says what failed and, for the usual errnos, why. */
export function fileError(code: string, what: string, e: unknown): PatchFedError {
  const errno = (e as NodeJS.ErrnoException | null)?.code;
  const why =
    errno === 'ENOSPC' ? 'the disk is full (ENOSPC)'
    : errno === 'EDQUOT' ? 'the disk quota is exceeded (EDQUOT)'
    : errno === 'EACCES' || errno === 'EPERM' ? `permission denied (${errno})`
    : errno === 'EROFS' ? 'the file system is read-only (EROFS)'
    : errno === 'EIO' ? 'an I/O error occurred (EIO)'
    : e instanceof Error ? e.message : String(e);
  return new PatchFedError(code, `${what}: ${why}.`, { cause: e });
}
