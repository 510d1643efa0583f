/**
 * Summaries as documents that fill while the model writes: each summary command opens one entry,
 * `huddle/summaryPartial` fills it (matched by its progress token, or bound by kind to the oldest
 * entry still waiting for its first words), and the command's result completes it.
 */
import type { SummaryKind, SummaryPartialParams, SummaryResult } from './protocol';

export type SummaryState = 'waiting' | 'writing' | 'done' | 'failed' | 'cancelled';

export interface SummaryEntry {
  id: number;
  kind: SummaryKind;
  title: string;
  state: SummaryState;
  token?: string;
  text: string;
  progress?: string;
  error?: string;
}

export const TITLES: Record<SummaryKind, string> = {
  file: 'Summary',
  selection: 'Summary of the selection',
  catch_up: 'Catch me up',
  session: 'Session summary',
};

export class SummaryBoard {
  private readonly entries = new Map<number, SummaryEntry>();
  private nextId = 1;

  /** At most `limit` summaries are kept; the oldest finished one goes first. */
  constructor(private readonly limit = 20) {}

  start(kind: SummaryKind, title: string): SummaryEntry {
    const entry: SummaryEntry = { id: this.nextId++, kind, title, state: 'waiting', text: '' };
    this.entries.set(entry.id, entry);
    this.trim();
    return entry;
  }

  get(id: number): SummaryEntry | undefined {
    return this.entries.get(id);
  }

  /** The entry a partial belongs to, now updated; undefined when it is for none of ours. */
  partial(params: SummaryPartialParams): SummaryEntry | undefined {
    const entry = this.byToken(params.token) ?? this.bind(params.token, params.kind);
    if (entry === undefined || entry.state === 'done' || entry.state === 'failed') return undefined;
    entry.text = params.text;
    if (entry.state === 'waiting') entry.state = 'writing';
    return entry;
  }

  /** A `$/progress` message for a summary's token. */
  progress(token: string, message: string | undefined, percentage: number | undefined): SummaryEntry | undefined {
    const entry = this.byToken(token);
    if (entry === undefined) return undefined;
    const pct = percentage === undefined ? '' : `${Math.round(percentage)}%`;
    entry.progress = [message, pct].filter(Boolean).join(' ');
    return entry;
  }

  finish(id: number, result: SummaryResult): SummaryEntry | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    entry.state = 'done';
    entry.token = result.token;
    entry.text = result.markdown;
    entry.progress = undefined;
    return entry;
  }

  fail(id: number, error: string, cancelled = false): SummaryEntry | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    entry.state = cancelled ? 'cancelled' : 'failed';
    entry.error = error;
    entry.progress = undefined;
    return entry;
  }

  render(id: number): string {
    const entry = this.entries.get(id);
    if (entry === undefined) return '_This summary is no longer kept._\n';
    const head = `# ${entry.title}\n\n`;
    switch (entry.state) {
      case 'waiting':
        return `${head}_Asking the model${entry.progress ? `: ${entry.progress}` : ''}…_\n`;
      case 'writing':
        return `${head}${entry.text}\n\n_…writing${entry.progress ? ` (${entry.progress})` : ''}_\n`;
      case 'done':
        return `${head}${entry.text.trim() ? entry.text.trimEnd() : '_The model had nothing to say._'}\n`;
      case 'cancelled':
        return `${head}${entry.text ? `${entry.text}\n\n` : ''}_Cancelled._\n`;
      case 'failed':
        return `${head}${entry.text ? `${entry.text}\n\n` : ''}**Failed:** ${entry.error ?? 'unknown error'}\n`;
    }
  }

  private byToken(token: string): SummaryEntry | undefined {
    for (const entry of this.entries.values()) {
      if (entry.token === token) return entry;
    }
    return undefined;
  }

  private bind(token: string, kind: SummaryKind): SummaryEntry | undefined {
    for (const entry of this.entries.values()) {
      if (entry.kind === kind && entry.token === undefined && entry.state === 'waiting') {
        entry.token = token;
        return entry;
      }
    }
    return undefined;
  }

  private trim(): void {
    while (this.entries.size > this.limit) {
      const finished = [...this.entries.values()].find((e) => e.state !== 'waiting' && e.state !== 'writing');
      const drop = finished ?? this.entries.values().next().value;
      if (drop === undefined) return;
      this.entries.delete(drop.id);
    }
  }
}

export type SessionSpan = 'hour' | 'today' | 'day' | 'week';

export const SESSION_SPANS: { span: SessionSpan; label: string }[] = [
  { span: 'hour', label: 'The last hour' },
  { span: 'today', label: 'Today (since midnight)' },
  { span: 'day', label: 'The last 24 hours' },
  { span: 'week', label: 'The last 7 days' },
];

/** `{since, until}` in seconds since the epoch, for `huddle.summarizeSession`. */
export function sessionRange(span: SessionSpan, now: Date): { since: number; until: number } {
  const until = now.getTime() / 1000;
  const hours = { hour: 1, day: 24, week: 24 * 7 };
  if (span === 'today') {
    const midnight = new Date(now);
    midnight.setHours(0, 0, 0, 0);
    return { since: midnight.getTime() / 1000, until };
  }
  return { since: until - hours[span] * 3600, until };
}
