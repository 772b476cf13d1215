/**
 * Partial annotation (issue 15): which of the experiment's classes a site's ground truth holds.
 * A site config's `annotatedLabels` (shared/config/site.ts) is resolved here against the
 * dataset's labels into a LabelAnnotation: every class k is assigned a *channel* of the site's
 * coarser label space — channel 0 is background plus every class the site does not annotate,
 * then one channel per annotated entry (a class, or a merged group such as the whole tumour).
 *
 * The ground truth stores channel c under `storedIds[c]` (a group under its smallest id), so the
 * label files stay in the experiment's id space and the usual loaders read them. Training merges
 * the predicted probabilities by `channelOf` before the loss (marginal loss, train/marginal-loss.ts);
 * scoring maps predicted classes the same way and scores only the annotated channels.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { AnnotatedLabels } from '../../shared/config/site.ts';
import type { LabelClass } from './manifest.ts';

export interface AnnotatedChannel {
  /** Label name of a single class, or the group's name. */
  name: string;
  /** Experiment class ids in this channel (channel 0: background and the unannotated classes). */
  classes: number[];
  /** The id the ground truth stores this channel under. */
  storedId: number;
}

export interface LabelAnnotation {
  /** Channel of each experiment class, index = class id (length K). */
  channelOf: number[];
  /** Channel 0 is background; 1.. the annotated entries in config order. */
  channels: AnnotatedChannel[];
  /** Class ids the site's ground truth never holds (their voxels are background there). */
  unannotated: number[];
}

/**
 * Resolve a site's `annotatedLabels` against its dataset's labels (values 0..K-1, 0 background).
 * Throws E_CONFIG naming the offending id when one is unknown, background, or listed twice.
 */
export function resolveAnnotation(spec: AnnotatedLabels, labels: readonly LabelClass[], where = 'annotatedLabels'): LabelAnnotation {
  const K = labels.length;
  const nameOf = new Map(labels.map((l) => [l.value, l.name]));
  const known = labels.filter((l) => l.value !== 0).map((l) => `${l.value} (${l.name})`).join(', ');
  const channelOf = new Array<number>(K).fill(0);
  const seen = new Set<number>();
  const channels: AnnotatedChannel[] = [{ name: nameOf.get(0) ?? 'background', classes: [0], storedId: 0 }];
  for (const entry of spec) {
    const ids = typeof entry === 'number' ? [entry] : entry.labels;
    for (const id of ids) {
      if (id === 0) throw new PatchFedError('E_CONFIG', `${where}: label 0 is background, always annotated; list foreground ids only (${known})`);
      if (!nameOf.has(id) || id >= K) throw new PatchFedError('E_CONFIG', `${where}: unknown label id ${id}; the dataset's foreground labels are ${known}`);
      if (seen.has(id)) throw new PatchFedError('E_CONFIG', `${where}: label id ${id} (${nameOf.get(id)}) is listed twice`);
      seen.add(id);
      channelOf[id] = channels.length;
    }
    const name = typeof entry === 'number' ? (nameOf.get(entry) ?? String(entry)) : entry.name;
    channels.push({ name, classes: [...ids].sort((a, b) => a - b), storedId: Math.min(...ids) });
  }
  const unannotated: number[] = [];
  for (let k = 1; k < K; k++) {
    if (!seen.has(k)) {
      unannotated.push(k);
      channels[0]?.classes.push(k);
    }
  }
  return { channelOf, channels, unannotated };
}

/** True when the annotation is the identity: every class annotated on its own. */
export function isFullAnnotation(a: LabelAnnotation): boolean {
  return a.channels.length === a.channelOf.length && a.channelOf.every((c, k) => c === k);
}

/**
 * A label map in the experiment's classes as this site's annotators would draw it (class k →
 * the stored id of its channel): how partially annotated phantoms are written, and how a
 * prediction is mapped before it is scored against such a ground truth. Null annotation: unchanged.
 */
export function annotatedLabelMap(label: Uint8Array, a: LabelAnnotation | null): Uint8Array {
  if (!a) return label;
  const lut = a.channelOf.map((c) => a.channels[c]?.storedId ?? 0);
  const out = new Uint8Array(label.length);
  for (let i = 0; i < label.length; i++) out[i] = lut[label[i] ?? 0] ?? 0;
  return out;
}

/**
 * Per-class Dice (index k−1 for class k) of a mapped prediction (annotatedLabelMap) against a
 * partially annotated truth: a stored id's Dice is its whole channel's; every class that is not a
 * channel's stored id is NaN (nothing to score it against), so means skip it. Null: unchanged.
 */
export function annotatedDice(perClass: readonly number[], a: LabelAnnotation | null): number[] {
  if (!a) return [...perClass];
  const scored = new Set(a.channels.slice(1).map((c) => c.storedId));
  return perClass.map((d, i) => (scored.has(i + 1) ? d : NaN));
}

/** Per scored class id: the name its Dice is reported under (a merged group's name at its stored id). */
export function scoredLabelNames(a: LabelAnnotation): Map<number, string> {
  return new Map(a.channels.slice(1).map((c) => [c.storedId, c.name]));
}

/** "whole tumour (1+2+3), enhancing tumour (3)": what a site's per-class Dice scores. */
export function describeAnnotation(a: LabelAnnotation): string {
  return a.channels
    .slice(1)
    .map((c) => `${c.name} (${c.classes.join('+')})`)
    .join(', ');
}
