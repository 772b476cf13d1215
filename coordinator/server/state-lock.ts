/**
 * One coordinator per state directory: the checkpoint store and the round bookkeeping assume a
 * single writer. The lock is a file holding the owner's pid; a lock left by a dead process (the
 * coordinator was killed) is taken over, a live owner's is refused.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';

export const LOCK_FILE = 'coordinator.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of `stateDir`; returns its release function. */
export function lockStateDir(stateDir: string): () => void {
  const file = join(stateDir, LOCK_FILE);
  for (let tries = 0; tries < 3; tries++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o644);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return () => {
        try {
          if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.rmSync(file, { force: true });
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new PatchFedError('state-dir-unwritable', `Cannot create ${file}: ${(e as Error).message}.`, { subject: file });
      }
    }
    let owner = NaN;
    try {
      owner = Number(fs.readFileSync(file, 'utf8').trim());
    } catch {
      continue; // removed meanwhile: try again
    }
    if (Number.isSafeInteger(owner) && owner > 0 && (owner === process.pid || alive(owner))) {
      throw new PatchFedError(
        'state-dir-locked',
        `State directory ${stateDir} is in use by another coordinator (pid ${owner}). Stop it first; if no coordinator runs there, delete ${file}.`,
        { subject: stateDir },
      );
    }
    fs.rmSync(file, { force: true }); // stale: its owner is gone
  }
  throw new PatchFedError('state-dir-locked', `Could not take the lock ${file}; another coordinator may be starting in ${stateDir}.`, { subject: stateDir });
}
