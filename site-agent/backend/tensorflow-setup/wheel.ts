/**
 * Getting files out of Python wheels: `pip download` fetches them (from whatever index pip is
 * configured for: PyPI, or a local mirror), and Python's zipfile extracts the members we need —
 * the same Python that runs pip, so the setup needs no unzip tool and never loads a 274 MB
 * archive into Node's memory.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../../shared/errors.ts';
import { failureLine, type ToolRunner } from './run-tool.ts';

/** PEP 427: a wheel's file name starts with the distribution name, '-' and '.' turned into '_'. */
export function wheelPrefix(distribution: string): string {
  return `${distribution.toLowerCase().replace(/[-_.]+/g, '_')}-`;
}

/** The distribution name of a requirement such as `nvidia-cudnn-cu12<10.0,>=9.3.0.75`. */
export function requirementName(requirement: string): string {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(requirement);
  if (!m?.[1]) throw new Error(`not a requirement: '${requirement}'`);
  return m[1];
}

/**
 * `pip download --no-deps --only-binary=:all:` of `requirements` into `dest`; returns, for each
 * requirement, the wheel file now in `dest` (the newest if several versions are there).
 */
export function pipDownload(python: string, requirements: readonly string[], dest: string, run: ToolRunner, env: NodeJS.ProcessEnv = process.env): string[] {
  const args = ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check', '--dest', dest, ...requirements];
  const r = run(python, args, { env });
  if (r.status !== 0) {
    throw new PatchFedError('tensorflow-setup-download', `setup tensorflow: pip could not download ${requirements.join(' ')}: ${failureLine(r)}`, { subject: requirements.join(' ') });
  }
  return requirements.map((req) => {
    const name = requirementName(req);
    const found = readdirSync(dest)
      .filter((f) => f.endsWith('.whl') && f.toLowerCase().startsWith(wheelPrefix(name)))
      .map((f) => path.join(dest, f))
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    const newest = found[0];
    if (newest === undefined) {
      throw new PatchFedError('tensorflow-setup-download', `setup tensorflow: pip reported success but no ${wheelPrefix(name)}*.whl is in ${dest}`, { subject: dest });
    }
    return newest;
  });
}

/** A member-prefix mapping: members starting with `from` are written to `to` + the rest of their path. */
export interface ExtractRule {
  from: string;
  to: string;
}

export interface ExtractResult {
  files: number;
  bytes: number;
}

const EXTRACT_SCRIPT = `
import json, os, re, shutil, sys, zipfile
wheel, dest, rules, exclude = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
skip = re.compile(exclude) if exclude else None
root = os.path.realpath(dest)
files = total = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.is_dir() or (skip and skip.search(info.filename)):
            continue
        for rule in rules:
            if info.filename.startswith(rule["from"]):
                out = os.path.realpath(os.path.join(dest, rule["to"] + info.filename[len(rule["from"]):]))
                if not out.startswith(root + os.sep):
                    sys.exit("unsafe member path: " + info.filename)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(out, mode)
                files += 1
                total += info.file_size
                break
print(json.dumps({"files": files, "bytes": total}))
`;

/** Extracts the members `rules` select (minus those matching `exclude`) from `wheel` into `dest`. */
export function extractWheel(python: string, wheel: string, dest: string, rules: readonly ExtractRule[], run: ToolRunner, exclude = ''): ExtractResult {
  const r = run(python, ['-c', EXTRACT_SCRIPT, wheel, dest, JSON.stringify(rules), exclude], { timeoutMs: 20 * 60_000 });
  if (r.status !== 0) {
    throw new PatchFedError('tensorflow-setup-extract', `setup tensorflow: extracting ${path.basename(wheel)} failed: ${failureLine(r)}`, { subject: wheel });
  }
  try {
    return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as ExtractResult;
  } catch {
    throw new PatchFedError('tensorflow-setup-extract', `setup tensorflow: extracting ${path.basename(wheel)} printed no summary: ${r.stdout.slice(0, 200)}`, { subject: wheel });
  }
}

const METADATA_SCRIPT = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if not names:
        sys.exit("no *.dist-info/METADATA in " + sys.argv[1])
    sys.stdout.write(z.read(names[0]).decode("utf-8"))
`;

/** The wheel's core metadata (PEP 566 text: Name, Version, Requires-Dist, …). */
export function readWheelMetadata(python: string, wheel: string, run: ToolRunner): string {
  const r = run(python, ['-c', METADATA_SCRIPT, wheel], { timeoutMs: 5 * 60_000 });
  if (r.status !== 0) {
    throw new PatchFedError('tensorflow-setup-extract', `setup tensorflow: reading the metadata of ${path.basename(wheel)} failed: ${failureLine(r)}`, { subject: wheel });
  }
  return r.stdout;
}
