/**
 * Least-recently-used cache bounded by bytes, not entries: preprocessed cases differ in size
 * by orders of magnitude (a 64^3 MRI vs a 512x512x987 CT), so only a byte bound keeps memory flat.
 */
export class ByteLruCache<V> {
  // Map iteration order is insertion order; re-inserting on access makes the first key the LRU.
  private readonly entries = new Map<string, { value: V; bytes: number }>();
  private used = 0;
  evictions = 0;

  constructor(
    readonly maxBytes: number,
    private readonly sizeOf: (value: V) => number,
  ) {
    if (!(maxBytes >= 0) || !Number.isFinite(maxBytes)) throw new RangeError(`cache size must be a finite number >= 0, got ${maxBytes}`);
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  /**
   * Store a value, evicting least-recently-used entries until it fits. A value larger than the
   * whole bound is not stored (returns false): the caller still has it, the cache stays bounded.
   */
  set(key: string, value: V): boolean {
    this.delete(key);
    const bytes = this.sizeOf(value);
    if (bytes > this.maxBytes) return false;
    while (this.used + bytes > this.maxBytes) {
      const oldest = this.entries.keys().next().value as string;
      this.delete(oldest);
      this.evictions++;
    }
    this.entries.set(key, { value, bytes });
    this.used += bytes;
    return true;
  }

  delete(key: string): boolean {
    const entry = this.entries.get(key);
    if (!entry) return false;
    this.entries.delete(key);
    this.used -= entry.bytes;
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }
}
