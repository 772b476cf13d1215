import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { CliError } from '../main.ts';

interface KeygenOptions {
  out: string;
  force: boolean;
}

export function register(program: Command): void {
  program
    .command('keygen')
    .description(
      'Create the identity of a site or the coordinator: an X25519 (encryption) and an Ed25519 (signing) key pair.\n' +
        'Writes <prefix>.key (secret, mode 0600, never leaves the machine) and <prefix>.pub (share it at enrolment).',
    )
    .requiredOption('--out <prefix>', 'path prefix for the two files, e.g. keys/site-a')
    .option('--force', 'replace existing key files (the old identity is lost)', false)
    .action(async (opts: KeygenOptions) => {
      const prefix = opts.out;
      if (prefix.trim() === '' || /[\\/]$/.test(prefix) || path.basename(prefix).startsWith('.') || isDirectory(prefix)) {
        throw new CliError(`--out must be a path prefix such as keys/site-a (files keys/site-a.key and keys/site-a.pub), got '${prefix}'.`);
      }
      const { generateKeyPairs, writeKeyFiles } = await import('../../shared/crypto/keys.ts');
      const written = writeKeyFiles(prefix, generateKeyPairs(), { force: opts.force });
      process.stdout.write(
        `Secret key: ${written.secretPath} (mode 0600; keep it on this machine)\n` +
          `Public key: ${written.publicPath}\n` +
          `Fingerprint: ${written.fingerprint}\n`,
      );
    });
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
