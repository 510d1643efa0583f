import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ProgressMeter } from '../../src/core/progress';
import { type Clock, Throttle } from '../../src/core/throttle';

class FakeClock implements Clock {
  time = 0;
  timers: { at: number; fn: () => void; id: number }[] = [];
  private ids = 0;
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.ids;
    this.timers.push({ at: this.time + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers.at(0);
      if (next === undefined || next.at > end) break;
      this.timers.shift();
      this.time = next.at;
      next.fn();
    }
    this.time = end;
  }
}

test('throttle: the first at once, then the latest once per interval', () => {
  const clock = new FakeClock();
  const seen: [number, number][] = [];
  const throttle = new Throttle<number>(50, (v) => seen.push([clock.time, v]), clock);
  throttle.push(1);
  clock.advance(10);
  throttle.push(2);
  throttle.push(3);
  clock.advance(100);
  throttle.push(4);
  assert.deepEqual(seen, [
    [0, 1],
    [50, 3],
    [110, 4],
  ]);
});

test('throttle: dispose drops what is pending', () => {
  const clock = new FakeClock();
  const seen: number[] = [];
  const throttle = new Throttle<number>(50, (v) => seen.push(v), clock);
  throttle.push(1);
  throttle.push(2);
  throttle.dispose();
  clock.advance(100);
  assert.deepEqual(seen, [1]);
});

test('progress: absolute percentages become increments, never backwards, capped at 100', () => {
  const meter = new ProgressMeter();
  assert.deepEqual([0, 30, 20, 80, 150, undefined].map((p) => meter.increment(p)), [0, 30, 0, 50, 20, undefined]);
});
