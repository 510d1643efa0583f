import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { Peer, Status } from '../../src/core/protocol';
import { errorMessage, statusView } from '../../src/core/status';

const connected: Status = {
  state: 'connected',
  reason: '',
  room: 'acme/webapp',
  user: 'ann',
  color: '#e6194b',
  hub: 'ws://127.0.0.1:8765',
  solo: false,
  peers: ['bob'],
  repairs: 0,
  shared: ['app.py'],
};
const bob = (clientId: number, file: string | null): Peer => ({ clientId, name: 'bob', color: '#3cb44b', file, uri: null });

test('connected: the room and how many are here (people, not editors)', () => {
  const view = statusView({ status: connected, peers: [bob(1, 'app.py'), bob(2, 'b.py')] });
  assert.equal(view.text, '$(broadcast) acme/webapp $(person) 1');
  assert.equal(view.warning, false);
  assert.match(view.tooltip, /connected to acme\/webapp on ws:\/\/127\.0\.0\.1:8765 as ann/);
  assert.match(view.tooltip, /^bob: app\.py, b\.py$/m);
});

test('the user’s own completions: how many were taken, and the scope the hub adapted', () => {
  assert.doesNotMatch(statusView({ status: connected, peers: [] }).tooltip, /AI completions/);
  const acceptance = { shown: 10, accepted: 4, partly: 2, ignored: 3, rate: 6 / 9, scope: 'line' as const };
  const view = statusView({ status: { ...connected, acceptance }, peers: [] });
  assert.match(view.tooltip, /^AI completions: 10 shown, 67% taken \(4 accepted, 2 partly, 3 ignored\); one line at a time/m);
});

test('following shows in the item', () => {
  assert.equal(statusView({ status: connected, peers: [], following: 'bob' }).text, '$(broadcast) acme/webapp $(eye) bob');
});

test('solo mode says so and how to share', () => {
  const view = statusView({ status: { ...connected, solo: true, hub: 'ws://127.0.0.1:40000', room: 'app' }, peers: [] });
  assert.equal(view.text, '$(person) solo');
  assert.match(view.tooltip, /Join Session/);
});

test('rejected and reconnecting warn, with the reason', () => {
  const rejected = statusView({ status: { ...connected, state: 'rejected', reason: 'token expired' }, peers: [] });
  assert.equal(rejected.text, '$(error) acme/webapp (rejected)');
  assert.equal(rejected.warning, true);
  assert.match(rejected.tooltip, /Reason: token expired/);
  assert.match(rejected.tooltip, /new invite/);
  assert.equal(statusView({ status: { ...connected, state: 'reconnecting' }, peers: [] }).warning, true);
});

test('read-only is not a warning but is explained', () => {
  const view = statusView({ status: { ...connected, state: 'read-only' }, peers: [] });
  assert.equal(view.text, '$(eye) acme/webapp (read-only)');
  assert.equal(view.warning, false);
  assert.match(view.tooltip, /not shared/);
});

test('before the first status, and when the server could not start', () => {
  assert.equal(statusView({ peers: [] }).text, '$(loading~spin) Huddle');
  const failed = statusView({ peers: [], failed: 'spawn huddle ENOENT' });
  assert.equal(failed.warning, true);
  assert.match(failed.tooltip, /ENOENT/);
});

test('no folder open: nothing to share, not an error', () => {
  const view = statusView({ peers: [], noFolder: true });
  assert.equal(view.text, '$(circle-slash) Huddle');
  assert.equal(view.warning, false);
});

test('errors read once as Huddle’s', () => {
  assert.equal(errorMessage(new Error('Huddle AI: HTTP 503: model is loading')), 'Huddle AI: HTTP 503: model is loading');
  assert.equal(errorMessage(new Error('not connected')), 'Huddle: not connected');
  assert.equal(errorMessage('plain'), 'Huddle: plain');
});
