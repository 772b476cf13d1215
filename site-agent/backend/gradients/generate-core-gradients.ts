/**
 * Regenerates core-gradients.generated.ts from the installed @tensorflow/tfjs-core.
 *
 * Why: tfjs-core keeps its gradient definitions out of its CommonJS bundle (the one Node loads);
 * they live in `dist/register_all_gradients.js`, an ES module tree with extensionless and
 * directory imports that plain Node cannot load (the `@tensorflow/tfjs` union package normally
 * bundles them). Loading that tree at run time through tsx/vitest costs 2–6 s per process, so
 * instead we translate it once into a single file that uses only tfjs-core's public API.
 *
 * Run: `npx tsx site-agent/backend/gradients/generate-core-gradients.ts` after upgrading tfjs-core.
 * Every imported name is resolved against the public API here; an unknown name aborts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const coreDist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-core/package.json')), 'dist');
const coreVersion = (JSON.parse(readFileSync(path.join(coreDist, '..', 'package.json'), 'utf8')) as { version: string }).version;
const outFile = path.join(path.dirname(fileURLToPath(import.meta.url)), 'core-gradients.generated.ts');

/** Internal ops the gradients call that tfjs-core does not export; translated alongside. */
const INTERNAL_OPS = [
  'avg_pool_3d_grad', 'avg_pool_grad', 'conv2d_backprop_filter', 'conv2d_backprop_input',
  'conv3d_backprop_filter', 'conv3d_backprop_input', 'depthwise_conv2d_native_backprop_filter',
  'depthwise_conv2d_native_backprop_input', 'local_response_normalization_backprop',
  'max_pool_3d_grad', 'max_pool_grad',
].map((name) => `ops/${name}.js`);

/** Helper modules of dist/gradients that other gradient files import. */
const GRADIENT_HELPERS = ['gradients/min_max_grad_util.js', 'gradients/Abs_grad.js'];

/** Namespaces of internal utility modules, mapped to where the public API re-exports them. */
const NAMESPACE_SOURCES: Record<string, string> = {
  util: 'tf.util',
  axis_util: 'tf.backend_util',
  conv_util: 'tf.backend_util',
  selu_util: 'tf.backend_util',
  broadcast_util: 'tf.broadcast_util',
  slice_util: 'tf.slice_util',
};

const api = tf as unknown as Record<string, Record<string, unknown> | undefined>;
/** Names defined by an earlier translated module, visible to later ones at top level. */
const localNames = new Set<string>(['ENGINE', 'convertToTensor']);

function moduleBaseName(specifier: string): string {
  return specifier.replace(/^.*\//, '').replace(/\.js$/, '');
}

/** The expression a named import resolves to, or throws naming the import. */
function resolveImport(name: string, specifier: string, file: string): string {
  if (localNames.has(name)) return name;
  const base = moduleBaseName(specifier);
  if (base === 'base' && name === 'backend_util') return 'tf.backend_util';
  const ns = NAMESPACE_SOURCES[base];
  if (ns !== undefined) {
    const holder = ns === 'tf.util' ? tf.util : ns === 'tf.broadcast_util' ? tf.broadcast_util : ns === 'tf.slice_util' ? tf.slice_util : tf.backend_util;
    if ((holder as Record<string, unknown>)[name] === undefined) throw new Error(`${file}: ${name} from ${specifier} is not public`);
    return `${ns}.${name}`;
  }
  if (api[name] === undefined) throw new Error(`${file}: ${name} from ${specifier} is neither public nor translated`);
  return `tf.${name}`;
}

/** One ES module of tfjs-core as an IIFE returning its exports; imports become const bindings. */
function translate(relFile: string): { code: string; exported: string[] } {
  let src = readFileSync(path.join(coreDist, relFile), 'utf8');
  // Drop the source map, licence header (restated once in the output) and doc comments.
  src = src
    .replace(/\/\/# sourceMappingURL=.*$/m, '')
    .replace(/^[ \t]*\/\*\*[\s\S]*?\*\/[ \t]*\n/gm, '')
    .replace(/^[ \t]*\/\/ tslint:.*\n/gm, '');
  const bindings: string[] = [];
  src = src.replace(/^import (.*) from '([^']+)';\n/gm, (_m, clause: string, specifier: string) => {
    const star = /^\* as (\w+)$/.exec(clause.trim());
    if (star) {
      const local = star[1]!;
      const ns = NAMESPACE_SOURCES[moduleBaseName(specifier)];
      if (ns === undefined) throw new Error(`${relFile}: namespace import of ${specifier}`);
      bindings.push(`const ${local} = ${ns};`);
      return '';
    }
    const named = /^\{(.*)\}$/.exec(clause.trim());
    if (!named) throw new Error(`${relFile}: unsupported import ${clause}`);
    for (const part of named[1]!.split(',').map((s) => s.trim()).filter(Boolean)) {
      const [imported, local = imported] = part.split(/\s+as\s+/) as [string, string?];
      const expr = resolveImport(imported, specifier, relFile);
      if (expr !== local) bindings.push(`const ${local} = ${expr};`);
    }
    return '';
  });
  if (/^import /m.test(src)) throw new Error(`${relFile}: import left untranslated`);
  const exported: string[] = [];
  src = src.replace(/^export (const|function) (\w+)/gm, (_m, kind: string, name: string) => {
    exported.push(name);
    return `${kind} ${name}`;
  });
  if (/^export /m.test(src)) throw new Error(`${relFile}: export left untranslated`);
  // Chained tensor methods are not registered when only tfjs-core is loaded.
  src = src.replace(/(\w+)\.reshape\(/g, 'tf.reshape($1, ');
  for (const name of exported) localNames.add(name);
  const body = [...bindings, src.trim(), `return { ${exported.join(', ')} };`].join('\n');
  return { code: `// --- ${relFile}\nconst { ${exported.join(', ')} } = (() => {\n${body}\n})();\n`, exported };
}

function main(): void {
  const parts: string[] = [];
  for (const f of [...INTERNAL_OPS, ...GRADIENT_HELPERS]) parts.push(translate(f).code);
  const configs: string[] = [];
  const gradientFiles = readdirSync(path.join(coreDist, 'gradients'))
    .filter((f) => f.endsWith('_grad.js'))
    .sort()
    .map((f) => `gradients/${f}`)
    .filter((f) => !GRADIENT_HELPERS.includes(f));
  for (const f of gradientFiles) {
    const { code, exported } = translate(f);
    parts.push(code);
    configs.push(...exported.filter((n) => n.endsWith('GradConfig')));
  }
  configs.push('absGradConfig');
  const header = `// @ts-nocheck -- machine translation of compiled JavaScript; checked by tests, not by tsc.
/**
 * GENERATED by generate-core-gradients.ts from @tensorflow/tfjs-core ${coreVersion}
 * (dist/gradients and the internal backprop ops they call). Do not edit by hand.
 *
 * @license Copyright 2018-2023 Google LLC. Licensed under the Apache License, Version 2.0
 * (http://www.apache.org/licenses/LICENSE-2.0); translated to use only the public API.
 */
import * as tf from '@tensorflow/tfjs-core';

const ENGINE = tf.engine();
/** Gradient inputs are always tensors; upstream also accepts arrays. */
const convertToTensor = (x) => (x instanceof tf.Tensor ? x : tf.tensor(x));

`;
  const footer = `\n/** Every gradient of tfjs-core ${coreVersion}'s register_all_gradients. */\nexport const coreGradientConfigs: tf.GradConfig[] = [\n${configs
    .sort()
    .map((c) => `  ${c},`)
    .join('\n')}\n];\n\nexport const coreGradientsVersion = '${coreVersion}';\n`;
  writeFileSync(outFile, header + parts.join('\n') + footer);
  console.log(`wrote ${configs.length} gradient configs to ${outFile}`);
}

main();
