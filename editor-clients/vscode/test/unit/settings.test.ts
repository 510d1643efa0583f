import assert from 'node:assert/strict';
import { test } from 'node:test';

import { initializationOptions, type Settings, tokenKey } from '../../src/core/settings';

const empty: Settings = { hub: '', room: '', user: '', color: '', completionScope: 'auto', serverCommand: [] };

test('solo: only the completion scope, and never a token', () => {
  assert.deepEqual(initializationOptions(empty, 'secret'), { completion_scope: 'auto' });
});

test('a shared room: every field the server knows, trimmed', () => {
  const settings: Settings = {
    hub: ' ws://127.0.0.1:8765 ',
    room: 'acme/webapp',
    user: 'ann ',
    color: '#e6194b',
    completionScope: 'line',
    serverCommand: ['ignored'],
  };
  assert.deepEqual(initializationOptions(settings, 'tok'), {
    hub: 'ws://127.0.0.1:8765',
    token: 'tok',
    room: 'acme/webapp',
    user: 'ann',
    color: '#e6194b',
    completion_scope: 'line',
  });
});

test('a hub without a stored token sends none (the hub answers rejected)', () => {
  assert.equal('token' in initializationOptions({ ...empty, hub: 'ws://h' }), false);
});

test('tokens are kept per hub and room', () => {
  assert.equal(tokenKey('ws://h:1/', 'r'), tokenKey('ws://h:1', ' r'));
  assert.notEqual(tokenKey('ws://h:1', 'a'), tokenKey('ws://h:1', 'b'));
  assert.notEqual(tokenKey('ws://h:1', 'a'), tokenKey('ws://h:2', 'a'));
});
