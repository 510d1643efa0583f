import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ghostLabel, remainingGhost } from '../../src/core/ghost';
import type { InlinePartialParams } from '../../src/core/protocol';

const partial: InlinePartialParams = {
  textDocument: { uri: 'file:///w/m.py' },
  position: { line: 3, character: 8 },
  text: 'price * count',
};
const line = 'total = ';

test('at the point it was asked for: all of it', () => {
  assert.equal(remainingGhost(partial, { position: { line: 3, character: 8 }, lineText: line }), 'price * count');
});

test('typing into it: the rest', () => {
  assert.equal(remainingGhost(partial, { position: { line: 3, character: 11 }, lineText: 'total = pri' }), 'ce * count');
});

test('typing something else, moving away, or typing all of it: nothing', () => {
  assert.equal(remainingGhost(partial, { position: { line: 3, character: 10 }, lineText: 'total = qu' }), undefined);
  assert.equal(remainingGhost(partial, { position: { line: 4, character: 8 }, lineText: line }), undefined);
  assert.equal(remainingGhost(partial, { position: { line: 3, character: 2 }, lineText: line }), undefined);
  assert.equal(remainingGhost(partial, { position: { line: 3, character: 21 }, lineText: 'total = price * count' }), undefined);
  assert.equal(remainingGhost(partial, { position: { line: 3, character: 30 }, lineText: line }), undefined);
});

test('UTF-16 columns, as VS Code and the server count them', () => {
  const p: InlinePartialParams = { ...partial, position: { line: 0, character: 5 }, text: '🦊 fox' };
  // `x = "` is 5 UTF-16 units, the fox 2 more.
  assert.equal(remainingGhost(p, { position: { line: 0, character: 7 }, lineText: 'x = "🦊' }), ' fox');
});

test('one line shows, with a mark when more follows', () => {
  assert.equal(ghostLabel('a + b'), 'a + b');
  assert.equal(ghostLabel('if x:\n    y()'), 'if x: …');
  assert.equal(ghostLabel('\n    return 1'), '⏎ return 1');
  assert.equal(ghostLabel('\r\n    a\n    b'), '⏎ a …');
  assert.equal(ghostLabel('x'.repeat(10), 4), 'xxxx …');
});
