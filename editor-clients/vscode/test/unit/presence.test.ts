import assert from 'node:assert/strict';
import { test } from 'node:test';

import { cursorParams, followedPosition, marksFor, orderRange, peerColor, teammates, withAlpha } from '../../src/core/presence';
import type { Peer } from '../../src/core/protocol';

const uri = 'file:///w/app.py';
const at = (line: number, character: number) => ({ line, character });

function peer(over: Partial<Peer>): Peer {
  return { clientId: 1, name: 'bob', color: '#3cb44b', file: 'app.py', uri, ...over };
}

test('a cursor and a backwards selection, ordered for drawing', () => {
  const peers = [peer({ position: at(2, 4), selection: { start: at(5, 0), end: at(2, 4) } })];
  assert.deepEqual(marksFor(peers, (u) => u === uri), [
    { clientId: 1, name: 'bob', color: '#3cb44b', cursor: at(2, 4), selection: { start: at(2, 4), end: at(5, 0) } },
  ]);
});

test('an empty selection is just a cursor', () => {
  const [mark] = marksFor([peer({ position: at(1, 1), selection: { start: at(1, 1), end: at(1, 1) } })], () => true);
  assert.equal(mark.selection, undefined);
});

test('only peers in this document with a position are drawn', () => {
  const peers = [
    peer({ clientId: 1, position: at(0, 0) }),
    peer({ clientId: 2, uri: 'file:///w/other.py', position: at(0, 0) }),
    peer({ clientId: 3 }), // in the file, but it is not open here: no position
    peer({ clientId: 4, uri: null, file: null }),
  ];
  assert.deepEqual(
    marksFor(peers, (u) => u === uri).map((m) => m.clientId),
    [1],
  );
});

test('a malformed colour falls back to a stable one; alpha for selections', () => {
  assert.equal(peerColor({ color: '#ABCDEF', clientId: 1 }), '#abcdef');
  assert.equal(peerColor({ color: 'red', clientId: 7 }), peerColor({ color: '', clientId: 7 }));
  assert.match(peerColor({ color: '', clientId: -3 }), /^#[0-9a-f]{6}$/);
  assert.equal(withAlpha('#e6194b', 0.25), 'rgba(230, 25, 75, 0.25)');
  assert.equal(withAlpha('oops', 0.5), 'oops');
});

test('teammates by name, sorted, with all their editors', () => {
  const mates = teammates([
    peer({ clientId: 9, name: 'zoe', file: null, uri: null }),
    peer({ clientId: 1, name: 'bob', position: at(3, 0) }),
    peer({ clientId: 2, name: 'bob', file: 'b.py', uri: 'file:///w/b.py' }),
    peer({ clientId: 3, name: '' }),
  ]);
  assert.deepEqual(
    mates.map((m) => [m.name, m.editors.map((e) => e.file)]),
    [
      ['bob', ['app.py', 'b.py']],
      ['someone', ['app.py']],
      ['zoe', [null]],
    ],
  );
  assert.deepEqual(mates[0].editors[0].position, at(3, 0));
});

test('huddle/cursor: selection.start is the anchor, position the caret', () => {
  assert.deepEqual(cursorParams(uri, at(4, 2), at(1, 0)), {
    uri,
    position: at(1, 0),
    selection: { start: at(4, 2), end: at(1, 0) },
  });
  assert.deepEqual(cursorParams(uri, at(1, 0), at(1, 0)), { uri, position: at(1, 0) });
});

test('orderRange', () => {
  assert.deepEqual(orderRange(at(1, 5), at(1, 2)), { start: at(1, 2), end: at(1, 5) });
  assert.deepEqual(orderRange(at(0, 9), at(1, 0)), { start: at(0, 9), end: at(1, 0) });
});

test('following: the followed teammate’s cursor in this document, from any of their editors', () => {
  const here = (u: string) => u === uri;
  const peers = [
    peer({ clientId: 1, name: 'ann', position: at(3, 0) }),
    peer({ clientId: 2, name: 'bob', uri: 'file:///w/other.py', position: at(9, 0) }),
    peer({ clientId: 3, name: 'bob', position: at(40, 2) }),
  ];
  assert.deepEqual(followedPosition(peers, 'bob', here), at(40, 2));
  assert.deepEqual(followedPosition(peers, 'bob', (u) => u === 'file:///w/other.py'), at(9, 0));
  assert.equal(followedPosition(peers, 'cat', here), undefined);
  // in the file, but it is not open here (no position), or in no shared file
  assert.equal(followedPosition([peer({ name: 'bob' }), peer({ name: 'bob', uri: null, file: null })], 'bob', here), undefined);
});
