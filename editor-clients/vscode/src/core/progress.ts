/** LSP work-done progress reports absolute percentages; VS Code's progress takes increments. */

export class ProgressMeter {
  private reported = 0;

  /** The increment to report for an absolute percentage (0 when it did not grow). */
  increment(percentage: number | undefined): number | undefined {
    if (percentage === undefined || !Number.isFinite(percentage)) return undefined;
    const clamped = Math.max(0, Math.min(100, percentage));
    const delta = Math.max(0, clamped - this.reported);
    this.reported += delta;
    return delta;
  }
}
