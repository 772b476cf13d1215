/**
 * What the setup needs before it starts, each checked up front so a missing piece is one clear
 * line instead of a failure ten minutes in: Python with pip (it downloads the wheel and reads
 * it), a C++ compiler and make (node-gyp builds the binding), and disk space.
 */
import { existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../../shared/errors.ts';
import type { SetupVariant } from './options.ts';
import { failureLine, findOnPath, runTool, type ToolRunner } from './run-tool.ts';

export interface PreflightDeps {
  run: ToolRunner;
  findOnPath: (name: string, env: NodeJS.ProcessEnv) => string | null;
  /** Free bytes for an unprivileged user on the filesystem holding `dir` (an existing folder). */
  freeBytes: (dir: string) => number;
  env: NodeJS.ProcessEnv;
}

export const defaultPreflightDeps: PreflightDeps = {
  run: runTool,
  findOnPath,
  freeBytes: (dir) => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  },
  env: process.env,
};

/**
 * Disk the setup needs, measured on tensorflow-cpu 2.21.0: wheel 274 MB + extracted libraries
 * 853 MB (634 MB after strip) + headers; the deps/ copy costs nothing when hard links work. The
 * GPU wheel (~0.6 GB) and the CUDA 12 / cuDNN 9 pip packages (~3 GB compressed) are estimates
 * from their published sizes (not measured here).
 */
export const REQUIRED_BYTES: Record<SetupVariant, { download: number; deps: number }> = {
  cpu: { download: 1.3e9, deps: 0.7e9 },
  gpu: { download: 9e9, deps: 6e9 },
};

export interface PythonWithPip {
  python: string;
  pipVersion: string;
}

/** PATCHFED_PYTHON, else python3, else python — the first that runs `-m pip --version`. */
export function findPythonWithPip(deps: PreflightDeps = defaultPreflightDeps): PythonWithPip {
  const names = deps.env.PATCHFED_PYTHON ? [deps.env.PATCHFED_PYTHON] : ['python3', 'python'];
  const problems: string[] = [];
  for (const name of names) {
    const python = deps.findOnPath(name, deps.env);
    if (python === null) {
      problems.push(`${name}: not found`);
      continue;
    }
    const r = deps.run(python, ['-m', 'pip', '--version'], { env: deps.env, timeoutMs: 60_000 });
    if (r.status === 0) return { python, pipVersion: r.stdout.trim().split(/\s+/).slice(0, 2).join(' ') };
    problems.push(`${name} -m pip: ${failureLine(r)}`);
  }
  throw new PatchFedError(
    'tensorflow-setup-pip',
    `setup tensorflow: pip is not available (${problems.join('; ')}); install Python 3 with pip (e.g. apt-get install python3-pip) or set PATCHFED_PYTHON to a Python that has pip.`,
    { subject: 'pip' },
  );
}

/** node-gyp compiles with $CXX (default g++) driven by make. */
export function checkCompiler(deps: PreflightDeps = defaultPreflightDeps): { cxx: string; make: string } {
  const cxxName = deps.env.CXX?.trim() || 'g++';
  const [cxxProgram = cxxName] = cxxName.split(/\s+/);
  const cxx = deps.findOnPath(cxxProgram, deps.env);
  const make = deps.findOnPath('make', deps.env);
  const missing = [cxx === null ? `a C++ compiler (${cxxName})` : null, make === null ? 'make' : null].filter((m): m is string => m !== null);
  if (cxx === null || make === null) {
    throw new PatchFedError(
      'tensorflow-setup-compiler',
      `setup tensorflow: ${missing.join(' and ')} not found on PATH; the tfjs-node binding is compiled from source (install them, e.g. apt-get install g++ make).`,
      { subject: 'compiler' },
    );
  }
  return { cxx, make };
}

/** The nearest existing folder at or above `p` (statfs needs one). */
export function existingAncestor(p: string): string {
  let dir = path.resolve(p);
  while (!existsSync(dir) && dir !== path.dirname(dir)) dir = path.dirname(dir);
  return dir;
}

export function checkDiskSpace(dir: string, neededBytes: number, what: string, deps: PreflightDeps = defaultPreflightDeps): void {
  if (neededBytes <= 0) return;
  const at = existingAncestor(dir);
  const free = deps.freeBytes(at);
  if (free < neededBytes) {
    const gb = (b: number) => `${(b / 1e9).toFixed(1)} GB`;
    throw new PatchFedError(
      'tensorflow-setup-disk',
      `setup tensorflow: not enough disk space for ${what} in ${at}: needs ~${gb(neededBytes)}, ${gb(free)} free (free some space or choose another --cache-dir).`,
      { subject: at },
    );
  }
}
