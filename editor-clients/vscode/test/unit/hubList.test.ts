/** The hub setting as one address or a list of a cluster's nodes, as `huddle lsp` takes it. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { hubAddresses, initializationOptions, type Settings, tokenKey, tokenKeys } from '../../src/core/settings';

const base: Settings = { hub: '', room: 'acme/webapp', user: '', color: '', completionScope: 'auto', serverCommand: [] };

test('a list of addresses goes to the server as a list, trimmed, blanks dropped', () => {
  const options = initializationOptions({ ...base, hub: [' ws://a:1 ', '', 'wss://b:2'] }, 'tok');
  assert.deepEqual(options.hub, ['ws://a:1', 'wss://b:2']);
  assert.equal(options.token, 'tok');
});

test('one string stays one string; an empty list is solo mode', () => {
  assert.equal(initializationOptions({ ...base, hub: 'ws://a:1' }).hub, 'ws://a:1');
  assert.deepEqual(initializationOptions({ ...base, hub: [] }, 'tok'), { room: 'acme/webapp', completion_scope: 'auto' });
  assert.deepEqual(hubAddresses(['ws://a', 3, null]), ['ws://a']); // what a hand-edited settings.json may hold
});

test("the token is looked up under each node's address, in order", () => {
  assert.deepEqual(tokenKeys({ hub: ['ws://a:1', 'ws://b:2/'], room: 'r' }), [tokenKey('ws://a:1', 'r'), tokenKey('ws://b:2', 'r')]);
  assert.deepEqual(tokenKeys({ hub: 'ws://a:1', room: 'r' }), [tokenKey('ws://a:1', 'r')]);
  assert.deepEqual(tokenKeys({ hub: '', room: 'r' }), []);
});

test('package.json declares huddle.hub as a string or a list of ws(s):// addresses', () => {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    contributes: { configuration: { properties: Record<string, { type: string[]; pattern: string; items: { type: string; pattern: string } }> } };
  };
  const hub = manifest.contributes.configuration.properties['huddle.hub'];
  assert.deepEqual(hub.type, ['string', 'array']);
  assert.equal(hub.items.type, 'string');
  const one = new RegExp(hub.pattern);
  const item = new RegExp(hub.items.pattern);
  for (const ok of ['', 'ws://a:1', 'wss://b.example/x']) assert.ok(one.test(ok), ok);
  assert.ok(!one.test('ws://a:1,ws://b:2'), 'several addresses go in a list');
  for (const ok of ['ws://a:1', 'wss://[::1]:8765']) assert.ok(item.test(ok), ok);
  for (const bad of ['', 'http://a', 'ws://a, ws://b']) assert.ok(!item.test(bad), bad);
});
