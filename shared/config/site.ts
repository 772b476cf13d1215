import { z } from 'zod';
import { ModelSpecSchema } from './model.ts';

export const BackendChoiceSchema = z.enum(['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']);
export type BackendChoice = z.infer<typeof BackendChoiceSchema>;

/** Reports a site may withhold from the coordinator (everything besides the update and its sample count). */
export const WITHHELD_REPORTS = ['dice', 'loss', 'timing', 'peak-memory', 'backend', 'plan'] as const;
export const WithheldReportSchema = z.enum(WITHHELD_REPORTS);
export type WithheldReport = z.infer<typeof WithheldReportSchema>;

const Shape3 = z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]);

/** Local training settings: used by `patchfed train` and, per round, by the site daemon. */
export const TrainingSchema = z
  .object({
    steps: z.number().int().positive().default(200),
    learningRate: z.number().positive().max(1).default(3e-4),
    /**
     * Validate (and keep the best checkpoint) every this many steps; 0 = four times per run (every
     * steps/4), since whole-volume validation after every epoch of a small train split would dominate short runs.
     */
    validateEvery: z.number().int().min(0).default(0),
    /** Fraction of training patches forced to contain foreground (nnU-Net oversampling). */
    foregroundRate: z.number().min(0).max(1).default(0.5),
    /** Skip all-background patches entirely (thesis §4.2). */
    skipEmptyPatches: z.boolean().default(false),
    /** Override the planner's choice; otherwise the largest patch/batch that fits the budget. */
    patch: Shape3.optional(),
    batch: z.number().int().positive().max(64).optional(),
    /**
     * Soft Dice (thesis §2.4.1) or Dice + cross-entropy (default, nnU-Net style: the CE term keeps a
     * gradient on all-background patches, where soft Dice alone is constant).
     */
    loss: z.enum(['dice', 'dice-ce']).default('dice-ce'),
    includeBackgroundInLoss: z.boolean().optional(),
    /** Inference: sliding-window overlap and weighting (MONAI style). overlap 0 + constant = thesis reconstruction. */
    overlap: z.number().min(0).lt(1).default(0.5),
    blend: z.enum(['gaussian', 'constant']).default('gaussian'),
  })
  .strict();
export type TrainingSettings = z.infer<typeof TrainingSchema>;

/**
 * Partial annotation (issue 15): the label ids this site's ground truth holds, when it annotates
 * fewer classes than the experiment. A number is a class annotated as such; `{ name, labels }` is
 * a coarse label its annotators drew instead of those classes, stored under the smallest of their
 * ids (e.g. brain `{ name: "whole tumour", labels: [1, 2, 3] }`). Every class named nowhere is
 * unannotated: its voxels are stored as background. Absent = every class annotated.
 * Ids are checked against the dataset's labels when the dataset is opened (site-agent/data/annotated-labels.ts).
 */
export const AnnotatedLabelSchema = z.union([
  z.number().int().min(1, 'label 0 is background, always annotated; list foreground ids only'),
  z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$/, 'must be 1-64 letters, digits, space, . _ -'),
    labels: z.array(z.number().int().min(1, 'label 0 is background, always annotated; list foreground ids only')).min(2, 'a merged label joins at least 2 classes'),
  }),
]);
export const AnnotatedLabelsSchema = z.array(AnnotatedLabelSchema).min(1, 'a site annotates at least one foreground class');
export type AnnotatedLabels = z.infer<typeof AnnotatedLabelsSchema>;

export const SiteConfigSchema = z
  .object({
    siteId: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'site ids are 1-64 letters, digits, _ . -'),
    dataset: z.string().min(1),
    /** The classes the dataset's ground truth holds (AnnotatedLabelsSchema); absent = all. */
    annotatedLabels: AnnotatedLabelsSchema.optional(),
    memoryBudgetMB: z.number().positive(),
    backend: BackendChoiceSchema.default('auto'),
    seed: z.number().int().default(1),
    cacheMB: z.number().positive().default(512),
    /** Where trained models, plans and reports go. */
    workDir: z.string().default('./work'),
    logFile: z.string().optional(),
    model: ModelSpecSchema.default({ mode: 'patch', norm: 'instance', cascadeFactor: 0.5 }),
    training: TrainingSchema.default(TrainingSchema.parse({})),
    /** Federation only (`patchfed site`). */
    federation: z
      .object({
        coordinatorUrl: z.string().url(),
        secretKey: z.string(),
        publicKey: z.string(),
        /** The coordinator's public key file, pinned: any other coordinator is refused. */
        coordinatorPublicKey: z.string(),
        /** Accept a self-signed TLS certificate at this path (HTTPS deployments). */
        caCertificate: z.string().optional(),
        /**
         * Optional reports this site does not send (README "What leaves a site"): 'dice' (validation
         * Dice per label), 'loss', 'timing', 'peak-memory', 'backend' (backend name, GPU), 'plan'
         * (planned patch and batch, memory budget). The update and its sample count always go.
         */
        withhold: z.array(WithheldReportSchema).default([]),
        /**
         * Cross-site validation: after the last round the site scores the final global model on its
         * test split and reports per-class means; with this, also its own last local model, so the
         * coordinator's table shows what federation bought this site (costs one more test-split pass).
         */
        evaluateLocalModel: z.boolean().default(false),
      })
      .strict()
      .optional(),
  })
  .strict();
export type SiteConfig = z.infer<typeof SiteConfigSchema>;
