import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type LogLevel, parseLogLine, ServerLog } from '../../src/core/serverLog';

test("Python logging's levels map to the output channel's", () => {
  const cases: [string, LogLevel, string][] = [
    ['2025-01-31 12:00:00,123 INFO huddle.lsp.server: connected to ws://h/r', 'info', 'huddle.lsp.server: connected to ws://h/r'],
    ['2025-01-31 12:00:00,123 DEBUG pygls.protocol: sending', 'debug', 'pygls.protocol: sending'],
    ['2025-01-31 12:00:00,123 WARNING huddle.lsp: hub unreachable', 'warn', 'huddle.lsp: hub unreachable'],
    ['2025-01-31 12:00:00,123 ERROR huddle.lsp: boom', 'error', 'huddle.lsp: boom'],
    ['2025-01-31 12:00:00,123 CRITICAL huddle: down', 'error', 'huddle: down'],
    ['INFO huddle: no timestamp', 'info', 'huddle: no timestamp'],
  ];
  for (const [line, level, text] of cases) assert.deepEqual(parseLogLine(line, undefined), { level, text }, line);
});

test("a record's continuation lines keep its level; stray lines before any record are errors", () => {
  assert.deepEqual(parseLogLine('Traceback (most recent call last):', 'error'), { level: 'error', text: 'Traceback (most recent call last):' });
  assert.deepEqual(parseLogLine('  second line of an info message', 'info'), { level: 'info', text: '  second line of an info message' });
  assert.equal(parseLogLine('/usr/bin/python3: No module named huddle', undefined).level, 'error');
  // A level word inside a message is not a level.
  assert.equal(parseLogLine('the INFO here is text', 'debug').level, 'debug');
});

test('ServerLog carries the level across lines', () => {
  const seen: [LogLevel, string][] = [];
  const log = new ServerLog((level, text) => seen.push([level, text]));
  for (const line of [
    '2025-01-31 12:00:00,001 INFO huddle.lsp: started',
    '2025-01-31 12:00:00,002 ERROR huddle.lsp: failed',
    'Traceback (most recent call last):',
    '2025-01-31 12:00:00,003 INFO huddle.lsp: recovered',
  ]) {
    log.line(line);
  }
  assert.deepEqual(
    seen.map(([level]) => level),
    ['info', 'error', 'error', 'info'],
  );
});
