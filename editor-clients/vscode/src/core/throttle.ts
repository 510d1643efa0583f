/** At most one call per interval, always ending with the latest value (leading and trailing). */

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export class Throttle<T> {
  private last = -Infinity;
  private timer: unknown;
  private pending: { value: T } | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly fn: (value: T) => void,
    private readonly clock: Clock = realClock,
  ) {}

  push(value: T): void {
    const wait = this.last + this.intervalMs - this.clock.now();
    if (wait <= 0 && this.timer === undefined) {
      this.fire(value);
      return;
    }
    this.pending = { value };
    this.timer ??= this.clock.setTimeout(() => this.flush(), Math.max(0, wait));
  }

  /** Drops what is pending. */
  dispose(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private flush(): void {
    this.timer = undefined;
    const pending = this.pending;
    this.pending = undefined;
    if (pending !== undefined) this.fire(pending.value);
  }

  private fire(value: T): void {
    this.last = this.clock.now();
    this.fn(value);
  }
}
