/**
 * What a site's config (`--site-config`) tells predict and export about a coordinator checkpoint
 * that the checkpoint cannot carry: the coordinator key the site pins, the site's own CT
 * foreground statistics (computed from its labelled training cases, exactly as it trained), and
 * the patch the site plans for its memory budget (the window it trained the patch-wise stages on).
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { SiteConfig } from '../../shared/config/site.ts';
import type { ModelLayout } from '../../shared/model/index.ts';
import type { Stage } from '../../shared/model/index.ts';
import { openMsdDataset, type MsdDataset } from '../data/index.ts';
import type { CtChannelStats } from '../data/normalize.ts';
import type { Shape3 } from '../pipeline/case.ts';
import { planSite } from '../run/site-plan.ts';
import { loadSiteConfig } from '../site-config.ts';

export class SiteContext {
  readonly cfg: SiteConfig;
  private dataset: Promise<MsdDataset> | undefined;

  constructor(readonly configPath: string) {
    this.cfg = loadSiteConfig(configPath);
  }

  get siteId(): string {
    return this.cfg.siteId;
  }

  /** The coordinator public key file the site pins (federation.coordinatorPublicKey), if any. */
  get pinnedCoordinatorKey(): string | undefined {
    return this.cfg.federation?.coordinatorPublicKey;
  }

  private open(): Promise<MsdDataset> {
    this.dataset ??= openMsdDataset(this.cfg.dataset, { cacheMB: 0, seed: this.cfg.seed });
    return this.dataset;
  }

  /** The site's dataset-wide CT foreground statistics, after checking its modalities are the model's. */
  async ctStats(modalities: readonly string[]): Promise<(CtChannelStats | undefined)[]> {
    const ds = await this.open();
    if (ds.modalities.length !== modalities.length || ds.modalities.some((m, i) => m !== modalities[i])) {
      throw new PatchFedError(
        'E_PREDICT',
        `--site-config ${this.configPath}: the site's dataset ${this.cfg.dataset} has modalities [${ds.modalities.join(', ')}] but the model expects [${modalities.join(', ')}]`,
        { subject: this.configPath },
      );
    }
    return ds.intensityStats();
  }

  /** The training patch of each patch-wise stage, as the site plans it for its budget (FederatedSiteTrainer does the same). */
  async plannedWindows(layout: ModelLayout, cascadeFactor: number): Promise<Map<Stage, Shape3>> {
    const ds = await this.open();
    const plan = planSite({
      largestShape: ds.largestShape(),
      channels: layout.channels,
      classes: layout.classes,
      mode: layout.mode,
      arch: layout.arch,
      budgetMB: this.cfg.memoryBudgetMB,
      cascadeFactor,
      patch: this.cfg.training.patch,
      batch: this.cfg.training.batch,
    });
    return new Map(plan.stages.map((s) => [s.stage, s.patch]));
  }
}
