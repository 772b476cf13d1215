/**
 * Where @tensorflow/tfjs-node(-gpu) keeps the pieces PatchFed's TensorFlow setup provides: the
 * native binding node-pre-gyp builds (lib/napi-v<N>/tfjs_binding.node) and the TensorFlow C
 * library it links (deps/lib, found through the binding's rpath $ORIGIN/../../deps/lib).
 * Shared by the backend candidate (is the binding there?) and `patchfed setup tensorflow`.
 * Imports no tfjs, so checking costs nothing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export type TfjsNodePackage = '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu';

export const TFJS_NODE_PACKAGES: Record<'cpu' | 'gpu', TfjsNodePackage> = {
  cpu: '@tensorflow/tfjs-node',
  gpu: '@tensorflow/tfjs-node-gpu',
};

const require = createRequire(import.meta.url);

/** The installed package's folder, or null when npm did not install it. */
export function findPackageDir(packageName: string): string | null {
  try {
    return path.dirname(require.resolve(`${packageName}/package.json`));
  } catch {
    // Packages with an "exports" map may hide package.json; resolve the entry and walk up.
    try {
      let dir = path.dirname(require.resolve(packageName));
      while (dir !== path.dirname(dir)) {
        const pj = path.join(dir, 'package.json');
        if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === packageName) return dir;
        dir = path.dirname(dir);
      }
    } catch {
      // not installed
    }
    return null;
  }
}

export function packageVersion(dir: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

interface BinaryConfig {
  module_name?: string;
  module_path?: string;
  napi_versions?: number[];
}

/**
 * The path node-pre-gyp builds the binding to and tfjs-node loads it from: `module_path` with the
 * highest N-API version both the package and this Node support (node-pre-gyp's own rule).
 */
export function bindingPath(packageDir: string, nodeNapiVersion = Number(process.versions.napi)): string {
  const pj = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { binary?: BinaryConfig };
  const binary = pj.binary ?? {};
  const supported = (binary.napi_versions ?? []).filter((v) => v <= nodeNapiVersion);
  if (supported.length === 0) {
    throw new Error(`${packageDir}/package.json lists no N-API version this Node (N-API ${nodeNapiVersion}) supports`);
  }
  const napi = Math.max(...supported);
  const modulePath = (binary.module_path ?? './lib/napi-v{napi_build_version}').replace('{napi_build_version}', String(napi));
  return path.join(packageDir, modulePath, `${binary.module_name ?? 'tfjs_binding'}.node`);
}

/** deps/ of the package: include/ (C API headers) and lib/ (the TensorFlow libraries). */
export function depsDir(packageDir: string): string {
  return path.join(packageDir, 'deps');
}

/** The command that builds the binding for a package (what error messages tell the user to run). */
export function setupCommand(packageName: TfjsNodePackage): string {
  return packageName === TFJS_NODE_PACKAGES.gpu ? 'npx patchfed setup tensorflow --gpu' : 'npx patchfed setup tensorflow';
}
