/**
 * Partially annotated phantom hospitals (issue 15): the label a site's annotators would draw when
 * they annotate fewer classes than the experiment — e.g. only the whole tumour, or everything but
 * one class. The phantom plants every class as usual; the written label map is then coarsened by
 * the site's `annotatedLabels` (site-agent/data/annotated-labels.ts), so the images stay the same
 * and only the ground truth loses detail, as at a real hospital with a coarser protocol.
 */
import type { AnnotatedLabels } from '../../shared/config/site.ts';
import { resolveAnnotation, type LabelAnnotation } from '../data/annotated-labels.ts';
import { BRAIN_LABELS } from './brain.ts';
import { LIVER_LABELS } from './liver.ts';
import type { PhantomTask } from './types.ts';

/** The task's labels as the dataset loader lists them (value, name). */
export function phantomLabelClasses(task: PhantomTask): { value: number; name: string }[] {
  return Object.entries(task === 'brain' ? BRAIN_LABELS : LIVER_LABELS).map(([v, name]) => ({ value: Number(v), name }));
}

/**
 * Named annotation protocols for `patchfed simulate --site-labels`: 'whole-tumour' draws one label
 * over every lesion class (brain: oedema + non-enhancing + enhancing tumour → "whole tumour";
 * liver: liver + lesions → "whole liver", the organ contour without lesions delineated).
 */
export function wholeTumourAnnotation(task: PhantomTask): AnnotatedLabels {
  return task === 'brain' ? [{ name: 'whole tumour', labels: [1, 2, 3] }] : [{ name: 'whole liver', labels: [1, 2] }];
}

/** The resolved annotation of a phantom site (throws E_CONFIG on ids the task does not have). */
export function phantomAnnotation(task: PhantomTask, spec: AnnotatedLabels): LabelAnnotation {
  return resolveAnnotation(spec, phantomLabelClasses(task), `annotatedLabels for the ${task} phantom`);
}
