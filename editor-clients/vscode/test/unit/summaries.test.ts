import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { SummaryResult } from '../../src/core/protocol';
import { SummaryBoard, sessionRange } from '../../src/core/summaries';

function result(over: Partial<SummaryResult>): SummaryResult {
  return { kind: 'file', markdown: '', summary: '', files: [], token: 't', ...over };
}

test('waiting, then writing as partials arrive, then done with the result', () => {
  const board = new SummaryBoard();
  const entry = board.start('file', 'Summary: app.py');
  assert.match(board.render(entry.id), /^# Summary: app\.py\n\n_Asking the model…_/);
  board.partial({ token: 'T1', kind: 'file', text: '- adds' });
  board.progress('T1', 'writing', 50);
  assert.equal(board.render(entry.id), '# Summary: app.py\n\n- adds\n\n_…writing (writing 50%)_\n');
  board.partial({ token: 'T1', kind: 'file', text: '- adds numbers' });
  assert.match(board.render(entry.id), /- adds numbers/);
  board.finish(entry.id, result({ markdown: '- adds two numbers\n', token: 'T1' }));
  assert.equal(board.render(entry.id), '# Summary: app.py\n\n- adds two numbers\n');
  // A late partial does not undo the final text.
  assert.equal(board.partial({ token: 'T1', kind: 'file', text: '- adds' }), undefined);
});

test('partials are bound by kind to the oldest summary still waiting, then by token', () => {
  const board = new SummaryBoard();
  const file = board.start('file', 'f');
  const catchUp = board.start('catch_up', 'c');
  const second = board.start('file', 'f2');
  assert.equal(board.partial({ token: 'A', kind: 'catch_up', text: 'x' })?.id, catchUp.id);
  assert.equal(board.partial({ token: 'B', kind: 'file', text: 'y' })?.id, file.id);
  assert.equal(board.partial({ token: 'C', kind: 'file', text: 'z' })?.id, second.id);
  assert.equal(board.partial({ token: 'B', kind: 'file', text: 'yy' })?.id, file.id);
  assert.equal(board.partial({ token: 'D', kind: 'session', text: '?' }), undefined);
  assert.equal(board.progress('unknown', 'm', 1), undefined);
});

test('a failure keeps what was written; a cancel says so', () => {
  const board = new SummaryBoard();
  const a = board.start('selection', 'S');
  board.partial({ token: 'A', kind: 'selection', text: 'half' });
  board.fail(a.id, 'Huddle AI: HTTP 503');
  assert.equal(board.render(a.id), '# S\n\nhalf\n\n**Failed:** Huddle AI: HTTP 503\n');
  const b = board.start('session', 'S2');
  board.fail(b.id, 'cancelled', true);
  assert.equal(board.render(b.id), '# S2\n\n_Cancelled._\n');
  const c = board.start('catch_up', 'C');
  board.finish(c.id, result({ markdown: '  ' }));
  assert.match(board.render(c.id), /nothing to say/);
});

test('bounded: the oldest finished summaries go first', () => {
  const board = new SummaryBoard(2);
  const running = board.start('file', 'running');
  const done = board.start('file', 'done');
  board.finish(done.id, result({}));
  const third = board.start('file', 'third');
  assert.ok(board.get(running.id));
  assert.equal(board.get(done.id), undefined);
  assert.ok(board.get(third.id));
  assert.match(board.render(done.id), /no longer kept/);
});

test('session spans', () => {
  const now = new Date(2026, 10, 23, 15, 30, 0);
  const until = now.getTime() / 1000;
  assert.deepEqual(sessionRange('hour', now), { since: until - 3600, until });
  assert.deepEqual(sessionRange('week', now), { since: until - 7 * 86400, until });
  assert.equal(sessionRange('today', now).since, new Date(2026, 10, 23).getTime() / 1000);
});
