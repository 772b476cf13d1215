/**
 * FedAvg (McMahan et al. 2017): the new global is the mean of the site models weighted by each
 * site's number of training samples.
 *
 * Running statistics (`norm-running-mean`, `norm-running-var`) are averaged the same way as
 * every other tensor. For the variance this is the sample-weighted mean of the per-site
 * variances, which ignores the spread *between* site means (the pooled variance would add it);
 * with non-IID sites that bias is one reason to prefer FedBN.
 */
import { SampleWeightedStrategy, type SamplingPolicy } from './sample-weighted.ts';

export function fedAvg(sampling: Partial<SamplingPolicy> = {}): SampleWeightedStrategy {
  return new SampleWeightedStrategy('fedavg', sampling, 0, []);
}
