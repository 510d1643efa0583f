/** package.json and the code agree: every command contributed is the code's, none collides. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { FOLLOWING_CONTEXT, TEAMMATES_VIEW, UI } from '../../src/core/ids';
import { Command } from '../../src/core/protocol';

interface Manifest {
  main: string;
  engines: { vscode: string };
  devDependencies: Record<string, string>;
  activationEvents: string[];
  contributes: {
    commands: { command: string; title: string; category: string }[];
    menus: Record<string, { command: string; when?: string }[]>;
    views: Record<string, { id: string }[]>;
    configuration: { properties: Record<string, { default: unknown }> };
  };
}

const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as Manifest;

test('contributed commands are exactly the ones the extension registers', () => {
  const contributed = manifest.contributes.commands.map((c) => c.command).sort();
  assert.deepEqual(contributed, Object.values(UI).sort());
  for (const c of manifest.contributes.commands) assert.equal(c.category, 'Huddle');
});

test("no command id collides with the server's (vscode-languageclient registers those)", () => {
  const server = new Set<string>(Object.values(Command));
  for (const id of Object.values(UI)) assert.ok(!server.has(id), id);
});

test('menus name only contributed commands; the view and context key are the code’s', () => {
  const ids = new Set<string>(Object.values(UI));
  for (const entries of Object.values(manifest.contributes.menus)) {
    for (const entry of entries) assert.ok(ids.has(entry.command), entry.command);
  }
  assert.ok(manifest.contributes.views.explorer.some((v) => v.id === TEAMMATES_VIEW));
  assert.ok(JSON.stringify(manifest.contributes.menus).includes(FOLLOWING_CONTEXT));
});

test('settings the client reads are declared, with defaults', () => {
  const props = manifest.contributes.configuration.properties;
  for (const key of ['hub', 'room', 'user', 'color', 'completionScope', 'server.command', 'trace.server']) {
    assert.ok(`huddle.${key}` in props, key);
  }
  assert.equal(props['huddle.hub'].default, '');
  assert.equal('huddle.token' in props, false, 'the token lives in SecretStorage, never in settings');
});

test('the bundle is the entry point; @types/vscode is no newer than the engine', () => {
  assert.equal(manifest.main, './dist/extension.js');
  const engine = manifest.engines.vscode.replace(/^\^/, '');
  assert.equal(manifest.devDependencies['@types/vscode'], engine);
  assert.deepEqual(manifest.activationEvents, ['onStartupFinished']);
});
