/**
 * The language server's stderr, line by line, at its real log level. `huddle lsp` logs through
 * Python's logging as `2025-01-31 12:00:00,123 INFO huddle.lsp.server: message`; without this
 * every line (most of them INFO) lands in the output channel as an error.
 */

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface LogLine {
  level: LogLevel;
  /** The line without the timestamp and level word (the output channel adds its own). */
  text: string;
}

const LEVELS: Record<string, LogLevel> = {
  DEBUG: 'debug',
  INFO: 'info',
  WARNING: 'warn',
  WARN: 'warn',
  ERROR: 'error',
  CRITICAL: 'error',
  FATAL: 'error',
};

const RECORD = /^(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?Z?\s+)?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\s+(.*)$/;

/**
 * One stderr line. A line that starts no record (a traceback's lines, a multi-line message)
 * belongs to the record before it and keeps its level; before any record (Python failing to
 * start, say) it is an error.
 */
export function parseLogLine(line: string, previous: LogLevel | undefined): LogLine {
  const match = RECORD.exec(line);
  if (match !== null) return { level: LEVELS[match[1]], text: match[2] };
  return { level: previous ?? 'error', text: line };
}

/** Feeds lines to `write` at their levels, remembering the current record's level. */
export class ServerLog {
  private level: LogLevel | undefined;

  constructor(private readonly write: (level: LogLevel, text: string) => void) {}

  line(line: string): void {
    const parsed = parseLogLine(line, this.level);
    this.level = parsed.level;
    this.write(parsed.level, parsed.text);
  }
}
