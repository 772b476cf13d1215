/**
 * `patchfed bench crypto [--chunk-mib N]`
 *
 * Per-chunk seal/open and signature times of protocol v1 (tweetnacl) and v2 (node:crypto), side
 * by side in one process.
 */
import type { Command } from 'commander';
import { parseIntOption } from '../../main.ts';

export function register(bench: Command): void {
  bench
    .command('crypto')
    .description("Upload chunk crypto: tweetnacl XSalsa20-Poly1305 / Ed25519 vs node:crypto AES-256-GCM / Ed25519.")
    .option('--chunk-mib <n>', 'chunk size in MiB', parseIntOption('--chunk-mib', 1, 64), 4)
    .action(async (opts: { chunkMib: number }) => {
      const { runCryptoBench } = await import('../../../bench/crypto.ts');
      for (const t of runCryptoBench(opts.chunkMib)) {
        const rate = t.mbPerSecond === undefined ? '' : `  ${t.mbPerSecond.toFixed(0)} MB/s`;
        process.stdout.write(`${t.name.padEnd(38)} ${t.ms.toFixed(3).padStart(9)} ms${rate}\n`);
      }
    });
}
