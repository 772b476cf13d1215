/**
 * Puts the cached TensorFlow library where tfjs-node's binding.gyp and its runtime look:
 * deps/include (C API headers) and deps/lib, where the binding links `-ltensorflow
 * -ltensorflow_framework` and finds them again at run time through its rpath
 * $ORIGIN/../../deps/lib. The wheel names the libraries libtensorflow_cc.so.2 and
 * libtensorflow_framework.so.2; symlinks give the linker its libtensorflow.so /
 * libtensorflow_framework.so, and libtensorflow.so.2.9.1 is the file tfjs-node's own install
 * script checks before it would download (and first wipe deps/). The libraries are hard links
 * to the cache when both are on one filesystem (no copy, no extra disk), else copies.
 * deps/ is assembled under a temporary name and swapped in whole.
 */
import { copyFileSync, cpSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../model/atomic-file.ts';
import { depsDir } from '../tfjs-node-package.ts';
import { LIBRARIES, type ExtractedLibrary } from './library-cache.ts';

/** Linker names and the file tfjs-node's install script treats as "libtensorflow is installed". */
export const LIBRARY_SYMLINKS: Readonly<Record<string, string>> = {
  'libtensorflow.so': 'libtensorflow_cc.so.2',
  'libtensorflow.so.2.9.1': 'libtensorflow_cc.so.2',
  'libtensorflow_framework.so': 'libtensorflow_framework.so.2',
};

/** Written last by a successful setup; a later run compares it to decide there is nothing to do. */
export const SETUP_RECORD = 'patchfed-setup.json';

export interface SetupRecord {
  packageName: string;
  packageVersion: string;
  distribution: string;
  tensorflowVersion: string;
  wheel: string;
  /** Binding path relative to the package folder. */
  binding: string;
  /** --gpu: the LD_LIBRARY_PATH that also finds the CUDA libraries (the RUNPATH should suffice). */
  ldLibraryPath: string | null;
  setupAt: string;
}

export interface InstalledDeps {
  dir: string;
  /** true when the libraries are hard links into the cache, false when they were copied. */
  hardLinked: boolean;
}

export function installDeps(library: ExtractedLibrary, packageDir: string): InstalledDeps {
  const target = depsDir(packageDir);
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.join(tmp, 'lib'), { recursive: true });
  try {
    cpSync(path.join(library.dir, 'include'), path.join(tmp, 'include'), { recursive: true });
    let hardLinked = true;
    for (const lib of LIBRARIES) hardLinked = linkOrCopy(path.join(library.dir, 'lib', lib), path.join(tmp, 'lib', lib)) && hardLinked;
    for (const [name, points] of Object.entries(LIBRARY_SYMLINKS)) symlinkSync(points, path.join(tmp, 'lib', name));
    if (existsSync(path.join(library.dir, 'nvidia'))) hardLinked = linkTree(path.join(library.dir, 'nvidia'), path.join(tmp, 'nvidia')) && hardLinked;
    rmSync(target, { recursive: true, force: true });
    renameSync(tmp, target);
    return { dir: target, hardLinked };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

export function writeSetupRecord(packageDir: string, record: SetupRecord): void {
  writeFileAtomic(path.join(depsDir(packageDir), SETUP_RECORD), `${JSON.stringify(record, null, 2)}\n`);
}

export function readSetupRecord(packageDir: string): SetupRecord | null {
  try {
    return JSON.parse(readFileSync(path.join(depsDir(packageDir), SETUP_RECORD), 'utf8')) as SetupRecord;
  } catch {
    return null;
  }
}

/** Hard link when possible (same filesystem), else copy; returns whether it linked. */
function linkOrCopy(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch {
    copyFileSync(from, to);
    return false;
  }
}

function linkTree(from: string, to: string): boolean {
  mkdirSync(to, { recursive: true });
  let linked = true;
  for (const name of readdirSync(from)) {
    const src = path.join(from, name);
    const dst = path.join(to, name);
    if (statSync(src).isDirectory()) linked = linkTree(src, dst) && linked;
    else linked = linkOrCopy(src, dst) && linked;
  }
  return linked;
}
