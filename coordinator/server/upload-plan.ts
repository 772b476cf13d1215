/**
 * How the sites of a round upload: chunk size and window (chunks in flight before waiting for an
 * acknowledgement), from the coordinator's upload buffer shared by the selected sites. Few sites
 * get big chunks and deep windows (speed: a site never idles waiting for acks); many sites get
 * small ones, so sites × window × chunk never exceeds the buffer and the coordinator's memory
 * does not grow with the number of sites.
 */
import { MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from '../../shared/protocol/limits.ts';

const MiB = 1024 * 1024;
const MAX_WINDOW = 8;

export interface UploadPlan {
  chunkBytes: number;
  window: number;
}

export function uploadPlan(selectedSites: number, bufferBytes: number): UploadPlan {
  const perSite = Math.max(MIN_CHUNK_BYTES, Math.floor(bufferBytes / Math.max(1, selectedSites)));
  // Two chunks in flight at least keep the pipe busy; bigger chunks cut per-message overhead.
  const chunkBytes = Math.max(MIN_CHUNK_BYTES, Math.min(MAX_CHUNK_BYTES, Math.floor(perSite / 2 / MiB) * MiB));
  const window = Math.max(1, Math.min(MAX_WINDOW, Math.floor(perSite / chunkBytes)));
  return { chunkBytes, window };
}
