/**
 * `patchfed inspect <file.nii[.gz] | dataset dir> [--json]`
 *
 * A file: its header facts (fslhd-like) and value statistics. A dataset folder: every case with
 * shape, spacing and label voxels per class, and every problem found (the whole dataset is
 * decoded, one case at a time). `--json` prints the stable form documented in
 * site-agent/data/INSPECT.md. Exit: 0 usable, 1 unusable (PatchFedError), 2 usage error.
 */
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { PatchFedError } from '../../shared/errors.ts';
import type { NiftiFileReport, NiftiValueStats } from '../../shared/nifti/index.ts';
import type { DatasetInspection } from '../../site-agent/data/inspect-dataset.ts';
import { parseIntOption } from '../main.ts';

interface InspectOptions {
  json?: boolean;
  maxVoxels?: number;
  maxMemory: number;
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('Show a NIfTI file\'s header facts, or validate an MSD dataset folder (shapes, spacings, label counts, problems).')
    .argument('<path>', 'a .nii / .nii.gz file, or a dataset folder containing dataset.json')
    .option('--json', 'print a stable machine-readable form (keys: site-agent/data/INSPECT.md)')
    .option('--max-voxels <n>', 'refuse volumes with more voxels than this (all channels)', parseIntOption('--max-voxels', 1))
    .option('--max-memory <MB>', 'memory budget: volumes whose decoding would need more are refused before anything is allocated (a file\'s statistics are computed in one streaming pass)', parseIntOption('--max-memory', 16), 2048)
    .action(async (target: string, opts: InspectOptions) => {
      await runInspect(target, opts);
    });
}

async function runInspect(target: string, opts: InspectOptions): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(target)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PatchFedError('inspect-missing', `${target}: ${code === 'ENOENT' ? 'no such file or folder' : `cannot be read (${code ?? String(e)})`}`, { subject: target });
  }
  // Loaded lazily: the NIfTI and dataset layers are heavy, and `--help` should be instant.
  const { inspectNiftiFile } = await import('../../shared/nifti/index.ts');
  const { inspectMsdDataset } = await import('../../site-agent/data/inspect-dataset.ts');
  const readOpts = { ...(opts.maxVoxels !== undefined ? { maxVoxels: opts.maxVoxels } : {}), maxMemoryBytes: opts.maxMemory * 2 ** 20 };
  if (!isDir) {
    const report = await inspectNiftiFile(target, readOpts);
    process.stdout.write(opts.json ? `${JSON.stringify({ kind: 'nifti-file', ...report }, null, 2)}\n` : formatFileReport(report));
    return;
  }
  const showProgress = !opts.json && process.stderr.isTTY === true;
  const report = await inspectMsdDataset(target, {
    maxVoxels: opts.maxVoxels,
    maxMemoryMB: opts.maxMemory,
    onProgress: showProgress ? (done, total, id) => process.stderr.write(`\rdecoding ${done + 1}/${total} ${id}\x1b[K`) : undefined,
  });
  if (showProgress) process.stderr.write('\r\x1b[K');
  process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatDatasetReport(report));
  if (report.usableCases === 0) {
    throw new PatchFedError('dataset-no-usable-case', `dataset '${report.name}' (${report.dir}) has no usable training case (${report.problems.length} problem(s) listed above)`, { subject: report.dir });
  }
}

// ---------- human-readable layouts ----------

const KEY_WIDTH = 16;

function row(key: string, value: string): string {
  return `${key.padEnd(KEY_WIDTH)}${value}\n`;
}

/** Up to 6 significant digits, no exponent noise for ordinary values. */
function num(v: number | null): string {
  if (v === null) return '-';
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

function statsText(s: NiftiValueStats): string {
  return `min ${num(s.min)}  max ${num(s.max)}  mean ${num(s.mean)}  non-finite ${s.nonFiniteVoxels}`;
}

export function formatFileReport(r: NiftiFileReport): string {
  const axes = r.dims.length === 4 ? '(x y z channels)' : '(x y z)';
  let out = '';
  out += row('filename', r.file);
  out += row('file_size', `${r.fileSizeBytes} bytes${r.compressed ? ' (gzip)' : ''}`);
  out += row('nifti_version', String(r.niftiVersion));
  out += row('endianness', r.endianness);
  out += row('dims', `${r.dims.join(' x ')}  ${axes}`);
  out += row('voxel_count', String(r.voxelCount));
  out += row('data_bytes', String(r.dataBytes));
  out += row('datatype', `${r.datatype} (code ${r.datatypeCode})`);
  out += row('bitpix', String(r.bitpix));
  out += row('pixdim', r.pixdim.map(num).join(' '));
  out += row('spacing', `${r.spacing.map(num).join(' x ')} ${r.spatialUnits === 'unknown' ? '(units unknown)' : r.spatialUnits}`);
  out += row('xyzt_units', `${r.xyztUnits} (${r.spatialUnits})`);
  out += row('qform_code', String(r.qformCode));
  out += row('sform_code', String(r.sformCode));
  out += row('affine_source', r.affineSource);
  r.affine.forEach((line, i) => {
    out += row(i === 0 ? 'affine' : '', line.map((v) => num(v).padStart(10)).join(' '));
  });
  out += row('scl_slope', num(r.scaling.slope));
  out += row('scl_inter', num(r.scaling.inter));
  out += row('scaling', r.scaling.applied ? 'applied (values are slope*raw+inter)' : 'none (identity)');
  out += row('values', statsText(r.stats));
  r.channelStats?.forEach((s, c) => {
    out += row(`  channel ${c}`, statsText(s));
  });
  out += row('vox_offset', String(r.voxOffset));
  out += row('descrip', r.description);
  return out;
}

function table(header: string[], rows: string[][]): string {
  // A row shorter than the header has empty cells; a cell beyond the header gets no padding.
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')}\n`;
  return line(header) + rows.map(line).join('');
}

export function formatDatasetReport(r: DatasetInspection): string {
  let out = '';
  out += row('dataset', `${r.name}  (${r.dir})`);
  out += row('modalities', r.modalities.map((m, i) => `${i} ${m}`).join(', '));
  out += row('labels', r.labels.map((l) => `${l.value} ${l.name}`).join(', '));
  const declared = r.numTraining === null ? '' : ` (numTraining ${r.numTraining})`;
  out += row('training', `${r.listedTraining} listed${declared}, ${r.usableCases} usable`);
  out += row('test images', `${r.listedTest} listed, ${r.testImages.filter((t) => t.usable).length} usable`);
  out += '\n';
  if (r.cases.length > 0) {
    const counts = (c: DatasetInspection['cases'][number]) =>
      c.labelCounts === null ? 'unusable' : r.labels.map((l) => `${l.value}:${c.labelCounts![String(l.value)] ?? 0}`).join(' ');
    out += table(
      ['case', 'shape', 'spacing (mm)', 'label voxels'],
      r.cases.map((c) => [c.id, `${c.shape.join('x')}${c.channels > 1 ? `x${c.channels}` : ''}`, c.spacing.map(num).join('x'), counts(c)]),
    );
    out += '\n';
  }
  if (r.testImages.length > 0) {
    out += table(
      ['test image', 'shape', 'spacing (mm)', 'status'],
      r.testImages.map((t) => [t.id, `${t.shape.join('x')}${t.channels > 1 ? `x${t.channels}` : ''}`, t.spacing.map(num).join('x'), t.usable ? 'ok' : 'unusable']),
    );
    out += '\n';
  }
  const total = Object.values(r.labelTotals).reduce((s, n) => s + n, 0);
  out += 'label totals over usable cases\n';
  for (const l of r.labels) {
    const n = r.labelTotals[String(l.value)] ?? 0;
    out += `  ${`${l.value} ${l.name}`.padEnd(KEY_WIDTH + 4)}${String(n).padStart(14)}  ${total > 0 ? ((100 * n) / total).toFixed(3) : '0.000'}%\n`;
  }
  out += '\n';
  if (r.problems.length === 0) out += 'problems        none\n';
  else {
    out += `problems (${r.problems.length})\n`;
    for (const p of r.problems) out += `  - ${p.caseId !== null ? `case ${p.caseId}: ` : ''}${p.file}: ${p.reason}\n`;
  }
  return out;
}
