import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { experimentLayout, initialGlobalWeights, layoutManifest, stagesForMode } from '../shared/model/index.ts';
import { combinedWeights, createStageNets, disposeStageNets } from '../site-agent/run/nets.ts';

const labels = { '0': 'background', '1': 'edema', '2': 'non-enhancing tumor', '3': 'enhancing tumour' };
const modalities = { '0': 'FLAIR', '1': 'T1w', '2': 't1gd', '3': 'T2w' };

describe('the tfjs-free model contract (shared/model)', () => {
  it('maps each mode to its stages, with stage 2 taking the one-hot foreground as extra channels', () => {
    expect(stagesForMode('full', 4, 4)).toEqual([{ stage: 'full', inChannels: 4 }]);
    expect(stagesForMode('patch', 1, 3)).toEqual([{ stage: 'patch', inChannels: 1 }]);
    expect(stagesForMode('cascade', 4, 4)).toEqual([
      { stage: 'cascade-stage1', inChannels: 4 },
      { stage: 'cascade-stage2', inChannels: 7 },
    ]);
  });

  it.each(['patch', 'cascade'] as const)('builds %s initial weights bit-identical to the tfjs nets a site builds', async (mode) => {
    await tf.setBackend('cpu');
    const layout = experimentLayout({ model: { mode, preset: 'tiny', norm: 'batch' }, labels, modalities });
    const pure = initialGlobalWeights(layout, 17);
    const nets = createStageNets(layout.stages.map((s) => ({ ...s, patch: [8, 8, 8], batch: 1, estimatedPeakBytes: 0 })), layout.arch, layout.classes, 17);
    try {
      const fromTf = combinedWeights(nets);
      expect(pure.manifest).toEqual(fromTf.manifest);
      expect(layoutManifest(layout)).toEqual(fromTf.manifest);
      pure.values.forEach((v, i) => expect(Buffer.from(v.buffer).equals(Buffer.from(fromTf.values[i]!.buffer))).toBe(true));
      if (mode === 'cascade') expect(pure.manifest.filter((s) => s.name.startsWith('stage2/enc0/conv1/kernel'))[0]?.shape).toEqual([3, 3, 3, 7, 4]);
    } finally {
      disposeStageNets(nets);
    }
  });
});
