/**
 * Getting NIfTI bytes off disk: header bytes only, header + the voxel bytes in one buffer of
 * exactly the promised size, or the voxel bytes streamed through a sink chunk by chunk. Gzip is
 * detected from content, decompressed as a stream, and never buffered beyond what the header
 * promises; whatever is allocated is checked against the memory budget first (budget.ts), so a
 * lying or hostile file cannot exhaust memory.
 */
import { constants as bufferConstants } from 'node:buffer';
import { open, type FileHandle } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { PatchFedError, isPatchFedError } from '../errors.ts';
import { checkMemoryBudget } from './budget.ts';
import { NIFTI2_HEADER_SIZE, parseNiftiHeader } from './header.ts';
import type { NiftiHeader, NiftiReadOptions } from './types.ts';

const CHUNK_BYTES = 1 << 16;
/** Read size for uncompressed files when streaming (the sink sees chunks of at most this). */
const PLAIN_CHUNK_BYTES = 1 << 20;
/**
 * After the voxels, keep decompressing at most this much to reach the gzip trailer and so
 * detect truncation/CRC errors; beyond it we stop (trailing junk is not worth a decompression bomb).
 */
const TRAILER_CHECK_LIMIT = 4 << 20;
/**
 * Deflate cannot expand more than 1032:1 (a 2-bit code per 258-byte match); with margin, a gzip
 * file smaller than 1/1100 of what the header promises cannot hold the voxels — refuse before allocating.
 */
const MAX_DEFLATE_RATIO = 1100;

export interface NiftiBytes {
  header: NiftiHeader;
  /** Exactly header.dataBytes voxel bytes, in the file's byte order, at byteOffset 0 of their own buffer. */
  data: Uint8Array;
  compressed: boolean;
  fileSizeBytes: number;
}

function ioError(file: string, e: unknown): PatchFedError {
  const err = e as NodeJS.ErrnoException;
  const reason = err.code === 'ENOENT' ? 'file not found' : err.code === 'EISDIR' ? 'is a directory' : err.message;
  return new PatchFedError('NIFTI_IO', `${file}: cannot read (${reason})`, { subject: file, cause: e });
}

function gzipError(file: string, e: unknown): PatchFedError {
  if (isPatchFedError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  if (err.syscall) return ioError(file, e);
  const reason = err.code === 'Z_BUF_ERROR' ? 'gzip stream is truncated (unexpected end of file)' : `gzip stream is corrupt (${err.message})`;
  return new PatchFedError('NIFTI_CORRUPT_GZIP', `${file}: ${reason}`, { subject: file, cause: e });
}

function shortData(file: string, header: NiftiHeader, got: number): PatchFedError {
  return new PatchFedError(
    'NIFTI_TRUNCATED',
    `${file}: data is shorter than the header promises (${header.dims.join('×')} ${header.datatype} needs ${header.dataBytes} bytes of voxel data from offset ${header.voxOffset}, only ${got} present)`,
    { subject: file },
  );
}

/** The voxel buffer, refused cleanly when it cannot exist. */
export function allocateVoxelBytes(file: string, n: number): Uint8Array {
  return allocate(file, n, 1, (k) => new Uint8Array(k));
}

/** `n` float32 values (scaled voxels), refused cleanly when they cannot exist. */
export function allocateFloat32(file: string, n: number): Float32Array {
  return allocate(file, n, 4, (k) => new Float32Array(k));
}

function allocate<T>(file: string, n: number, width: number, make: (n: number) => T): T {
  const tooLarge = () =>
    new PatchFedError('NIFTI_TOO_LARGE', `${file}: ${n * width} bytes of voxel data cannot be allocated`, { subject: file });
  if (n * width > bufferConstants.MAX_LENGTH) throw tooLarge();
  try {
    return make(n);
  } catch (e) {
    if (e instanceof RangeError) throw tooLarge();
    throw e;
  }
}

async function openFile(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (e) {
    throw ioError(file, e);
  }
}

/** Read up to `length` bytes at `position` into `target`; returns how many were available. */
async function readAt(fh: FileHandle, file: string, target: Uint8Array, position: number): Promise<number> {
  let done = 0;
  try {
    while (done < target.length) {
      const { bytesRead } = await fh.read(target, done, Math.min(target.length - done, 1 << 30), position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (e) {
    throw ioError(file, e);
  }
  return done;
}

async function sniff(fh: FileHandle, file: string): Promise<{ compressed: boolean; size: number }> {
  let size: number;
  try {
    size = (await fh.stat()).size;
  } catch (e) {
    throw ioError(file, e);
  }
  const magic = new Uint8Array(2);
  const n = await readAt(fh, file, magic, 0);
  return { compressed: n === 2 && magic[0] === 0x1f && magic[1] === 0x8b, size };
}

/** A gunzip stream over the file that can be abandoned part-way without leaking the fd. */
function gunzipFile(file: string) {
  const input = createReadStream(file, { highWaterMark: CHUNK_BYTES });
  const gunzip = createGunzip({ chunkSize: CHUNK_BYTES });
  input.on('error', (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  const close = () => {
    // Once abandoned, late errors (e.g. from a read in flight) have no reader left to report to.
    gunzip.on('error', () => undefined);
    input.unpipe(gunzip);
    input.destroy();
    gunzip.destroy();
  };
  return { gunzip, close };
}

/** First bytes of the decompressed stream (up to a NIfTI-2 header), stopping early. */
async function gunzipHead(file: string): Promise<Uint8Array> {
  const { gunzip, close } = gunzipFile(file);
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      parts.push(chunk);
      n += chunk.length;
      if (n >= NIFTI2_HEADER_SIZE) break;
    }
  } catch (e) {
    throw gzipError(file, e);
  } finally {
    close();
  }
  return Buffer.concat(parts, n);
}

/** Header bytes (up to 540) and file facts, reading as little as possible. */
export async function readHeaderBytes(file: string): Promise<{ bytes: Uint8Array; compressed: boolean; fileSizeBytes: number }> {
  const fh = await openFile(file);
  try {
    const { compressed, size } = await sniff(fh, file);
    if (compressed) return { bytes: await gunzipHead(file), compressed, fileSizeBytes: size };
    const head = new Uint8Array(Math.min(NIFTI2_HEADER_SIZE, size));
    const n = await readAt(fh, file, head, 0);
    return { bytes: head.subarray(0, n), compressed, fileSizeBytes: size };
  } finally {
    await fh.close();
  }
}

/**
 * Where the voxel bytes of a file go, in order, as they are read or decompressed. `begin` sees
 * the validated header before any voxel byte (and may refuse it: nothing has been allocated);
 * `write` must copy what it keeps, the chunk is reused.
 */
export interface VoxelSink {
  begin(header: NiftiHeader): void;
  /** Bytes [offset, offset + bytes.length) of the header.dataBytes voxel bytes. */
  write(bytes: Uint8Array, offset: number): void;
  /** After the last byte, once the data is known complete. */
  end?(): void;
}

export interface PumpResult {
  header: NiftiHeader;
  compressed: boolean;
  fileSizeBytes: number;
}

/** Header plus the voxel bytes through `sink` in chunks of at most PLAIN_CHUNK_BYTES; refuses truncated data. */
async function pumpPlain(fh: FileHandle, file: string, size: number, opts: NiftiReadOptions, sink: VoxelSink): Promise<PumpResult> {
  const head = new Uint8Array(Math.min(NIFTI2_HEADER_SIZE, size));
  const headLength = await readAt(fh, file, head, 0);
  const header = parseNiftiHeader(head.subarray(0, headLength), file, opts);
  const available = Math.max(0, size - header.voxOffset);
  if (available < header.dataBytes) throw shortData(file, header, available);
  sink.begin(header);
  const chunk = new Uint8Array(Math.min(PLAIN_CHUNK_BYTES, Math.max(1, header.dataBytes)));
  for (let done = 0; done < header.dataBytes; ) {
    const part = chunk.subarray(0, Math.min(chunk.length, header.dataBytes - done));
    const got = await readAt(fh, file, part, header.voxOffset + done);
    if (got < part.length) throw shortData(file, header, done + got); // file shrank while reading
    sink.write(part, done);
    done += got;
  }
  sink.end?.();
  return { header, compressed: false, fileSizeBytes: size };
}

/**
 * Stream-decompress: parse the header from the first bytes, then hand each decompressed chunk's
 * overlap with [vox_offset, vox_offset + dataBytes) to the sink.
 */
async function pumpGzip(file: string, size: number, opts: NiftiReadOptions, sink: VoxelSink): Promise<PumpResult> {
  const { gunzip, close } = gunzipFile(file);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let header: NiftiHeader | undefined;
  let position = 0; // decompressed bytes consumed so far
  let filled = 0;

  const start = () => {
    header = parseNiftiHeader(Buffer.concat(pending, pendingBytes), file, opts);
    const promised = header.voxOffset + header.dataBytes;
    if (promised > size * MAX_DEFLATE_RATIO + 1024) {
      throw new PatchFedError(
        'NIFTI_TRUNCATED',
        `${file}: data is shorter than the header promises (${header.dims.join('×')} ${header.datatype} needs ${promised} decompressed bytes; a ${size}-byte gzip file cannot hold that many)`,
        { subject: file },
      );
    }
    sink.begin(header);
    for (const part of pending) consume(part);
    pending = [];
  };
  const consume = (chunk: Buffer) => {
    const h = header as NiftiHeader;
    const from = Math.max(position, h.voxOffset);
    const to = Math.min(position + chunk.length, h.voxOffset + h.dataBytes);
    if (to > from) {
      sink.write(chunk.subarray(from - position, to - position), from - h.voxOffset);
      filled += to - from;
    }
    position += chunk.length;
  };

  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      if (!header) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= NIFTI2_HEADER_SIZE) start();
        continue;
      }
      consume(chunk);
      if (position > header.voxOffset + header.dataBytes + TRAILER_CHECK_LIMIT) break;
    }
    if (!header) start(); // whole file shorter than a NIfTI-2 header
  } catch (e) {
    throw gzipError(file, e);
  } finally {
    close();
  }
  const h = header as NiftiHeader;
  if (filled < h.dataBytes) throw shortData(file, h, filled);
  sink.end?.();
  return { header: h, compressed: true, fileSizeBytes: size };
}

/**
 * Reads a .nii / .nii.gz and passes its voxel bytes to `sink` in file order, never holding more
 * than a chunk: what the sink keeps is the only memory the read costs. Broken files are refused
 * (truncation, corrupt gzip) like readNiftiBytes does.
 */
export async function pumpNiftiVoxels(file: string, opts: NiftiReadOptions, sink: VoxelSink): Promise<PumpResult> {
  const fh = await openFile(file);
  let size: number;
  try {
    const sniffed = await sniff(fh, file);
    if (!sniffed.compressed) return await pumpPlain(fh, file, sniffed.size, opts, sink);
    size = sniffed.size;
  } finally {
    await fh.close();
  }
  return pumpGzip(file, size, opts, sink);
}

/**
 * Header plus exactly the promised voxel bytes; refuses broken files, and files whose decoding
 * would need more than the memory budget (`need(header)` bytes, default the voxel bytes
 * themselves), before allocating.
 */
export async function readNiftiBytes(file: string, opts: NiftiReadOptions = {}, need: (h: NiftiHeader) => number = (h) => h.dataBytes): Promise<NiftiBytes> {
  let data: Uint8Array = new Uint8Array(0);
  const result = await pumpNiftiVoxels(file, opts, {
    begin: (header) => {
      checkMemoryBudget(file, header, need(header), opts.maxMemoryBytes, 'decoding it');
      data = allocateVoxelBytes(file, header.dataBytes);
    },
    write: (bytes, offset) => data.set(bytes, offset),
  });
  return { ...result, data };
}
