import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { benchTransfer } from '../bench/transfer.ts';

// Real socket.io server and client on 127.0.0.1 (random port), full stack: handshake, sealed
// chunks, forced disconnect, reconnect + re-authentication, resume, commit, decode. The 200 MB
// run is `benchTransfer()` (patchfed bench transfer); 32 MiB keeps this test to seconds on 2 cores.
describe('upload over socket.io', () => {
  it('moves 32 MiB in 2 MiB chunks, survives a forced disconnect and resumes from the last acknowledged chunk', async () => {
    const lines: string[] = [];
    const window = 2;
    const r = await benchTransfer({ megabytes: 32, window, disconnectAfterChunks: 7, log: (l) => lines.push(l) });
    expect(r.chunkCount).toBe(17);
    expect(r.ackedBeforeDisconnect).toBe(7);
    expect(r.resumedFrom[0]).toBe(0);
    expect(r.resumedFrom).toHaveLength(2);
    // The receiver held chunks 0-6 (acknowledged) and at most the chunks then in flight.
    expect(r.resumedFrom[1]).toBeGreaterThanOrEqual(7);
    expect(r.resumedFrom[1]).toBeLessThanOrEqual(7 + window - 1);
    expect(r.chunksResent).toBeLessThanOrEqual(window);
    expect(r.chunksSent).toBe(r.chunkCount + r.chunksResent);
    expect(r.chunksStored).toBe(r.chunkCount);
    expect(r.duplicateChunks).toBe(0);
    expect(r.sha256Received).toBe(r.sha256Sent);
    expect(r.decodedEqual).toBe(true);
    expect(lines.join('\n')).toMatch(/attempt 2/);
    console.log(lines.at(-1));
  });

  it('rejects a chunk with one flipped byte on its way to the coordinator', async () => {
    let error: unknown;
    try {
      await benchTransfer({ megabytes: 5, disconnectAfterChunks: null, tamperChunkIndex: 1 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PatchFedError);
    expect((error as PatchFedError).code).toBe('chunk-bad-signature');
  });
});
