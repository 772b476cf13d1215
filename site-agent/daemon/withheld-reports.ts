/**
 * What a site leaves out of its reports to the coordinator (site config federation.withhold):
 * the metrics sent with each update and the hardware/plan facts of site-info. The update and its
 * sample count always go (the aggregate needs them); everything here is for people watching the
 * dashboard and can be withheld. Applied where the messages are built, so nothing withheld is
 * ever put on the wire.
 */
import type { WithheldReport } from '../../shared/config/site.ts';
import type { Metrics, SiteInfoMessage } from '../../shared/protocol/messages.ts';

export function withholdMetrics(metrics: Metrics, withheld: readonly WithheldReport[]): Metrics {
  if (withheld.length === 0) return metrics;
  const drop = new Set(withheld);
  const out: Metrics = { ...metrics };
  if (drop.has('dice')) delete out.dice;
  if (drop.has('loss')) delete out.loss;
  if (drop.has('timing')) delete out.timeMs;
  if (drop.has('peak-memory')) delete out.peakMemoryBytes;
  if (drop.has('backend')) delete out.backend;
  if (drop.has('plan')) {
    delete out.patch;
    delete out.batch;
  }
  return out;
}

export function withholdSiteInfo(info: SiteInfoMessage, withheld: readonly WithheldReport[]): SiteInfoMessage {
  if (withheld.length === 0) return info;
  const drop = new Set(withheld);
  const out: SiteInfoMessage = { ...info };
  if (drop.has('backend')) {
    delete out.backend;
    delete out.gpu;
  }
  if (drop.has('plan')) {
    delete out.patch;
    delete out.batch;
    delete out.memoryBudgetMB;
  }
  return out;
}
