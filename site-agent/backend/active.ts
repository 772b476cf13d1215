/**
 * The backend this process trains on, as chosen by selectBackend. The memory planner reads it to
 * model memory that depends on the backend (the native conv workspace exists only on 'cpu-fast';
 * TensorFlow has its own runtime footprint) without its callers having to pass the backend along.
 * Imports nothing, so `patchfed plan` stays fast.
 */

export interface ActiveBackend {
  /** tf backend name, e.g. 'cpu-fast' or 'tensorflow'. */
  name: string;
  gpu: boolean;
  /** TF_Version of the TensorFlow C library behind the 'tensorflow' backend, else null. */
  tensorflowVersion: string | null;
}

let active: ActiveBackend | null = null;

export function recordActiveBackend(backend: ActiveBackend): void {
  active = { ...backend };
}

/** The last backend selectBackend activated in this process, or null before any selection. */
export function activeBackend(): ActiveBackend | null {
  return active;
}
