import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Lookup, missingServerMessage, resolveServerCommand, which } from '../../src/core/serverCommand';

function lookup(executables: string[], extra: Partial<Lookup> = {}): Lookup {
  const set = new Set(executables);
  return {
    folders: ['/work/app'],
    trusted: true,
    platform: 'linux',
    isExecutable: (file) => set.has(file),
    pathEnv: '/usr/local/bin:/usr/bin',
    importsHuddle: () => true,
    ...extra,
  };
}

test('the setting wins, blank parts dropped', () => {
  assert.deepEqual(resolveServerCommand(['/opt/h/bin/huddle', '', 'lsp'], lookup(['/work/app/.venv/bin/huddle'])), {
    command: '/opt/h/bin/huddle',
    args: ['lsp'],
    source: 'setting',
  });
});

test("then the workspace's .venv", () => {
  const found = resolveServerCommand([], lookup(['/work/app/.venv/bin/huddle', '/usr/bin/huddle']));
  assert.deepEqual(found, { command: '/work/app/.venv/bin/huddle', args: ['lsp'], source: 'workspace .venv' });
});

test('the .venv of any workspace folder, in order', () => {
  const found = resolveServerCommand([], lookup(['/b/.venv/bin/huddle'], { folders: ['/a', '/b'] }));
  assert.equal(found?.command, '/b/.venv/bin/huddle');
});

test('an untrusted workspace does not get to run its own .venv', () => {
  const found = resolveServerCommand([], lookup(['/work/app/.venv/bin/huddle', '/usr/bin/huddle'], { trusted: false }));
  assert.deepEqual(found, { command: '/usr/bin/huddle', args: ['lsp'], source: 'PATH' });
});

test('then python -m huddle.cli lsp, when that Python has Huddle', () => {
  assert.deepEqual(resolveServerCommand([], lookup(['/usr/bin/python3'])), {
    command: '/usr/bin/python3',
    args: ['-m', 'huddle.cli', 'lsp'],
    source: 'python',
  });
});

test('nothing found: no command (a python3 without Huddle would only crash on start)', () => {
  assert.equal(resolveServerCommand([], lookup(['/usr/bin/python3'], { importsHuddle: () => false })), undefined);
  assert.equal(resolveServerCommand([], lookup([])), undefined);
  // An untrusted workspace's own .venv does not count either.
  assert.equal(resolveServerCommand([], lookup(['/work/app/.venv/bin/huddle'], { trusted: false, importsHuddle: () => false })), undefined);
});

test('the missing-server message says where it looked and what to do', () => {
  const message = missingServerMessage({ folders: ['/work/app'], trusted: true, platform: 'linux' });
  for (const part of ['huddle.server.command', '.venv/bin/huddle', 'PATH', 'python3', 'pip install huddle']) {
    assert.ok(message.includes(part), `${part} in: ${message}`);
  }
  assert.match(missingServerMessage({ folders: ['/a'], trusted: false, platform: 'linux' }), /not trusted/);
  assert.doesNotMatch(missingServerMessage({ folders: [], trusted: true, platform: 'linux' }), /\.venv\/bin/);
  assert.match(missingServerMessage({ folders: ['C:\\a'], trusted: true, platform: 'win32' }), /\.venv\\Scripts\\huddle\.exe/);
});

test('Windows: Scripts\\huddle.exe and PATHEXT-style names', () => {
  const win = { platform: 'win32' as const, folders: ['C:\\app'], pathEnv: 'C:\\Python\\Scripts;C:\\Python' };
  assert.equal(resolveServerCommand([], lookup(['C:\\app\\.venv\\Scripts\\huddle.exe'], win))?.command, 'C:\\app\\.venv\\Scripts\\huddle.exe');
  assert.equal(resolveServerCommand([], lookup(['C:\\Python\\Scripts\\huddle.exe'], win))?.command, 'C:\\Python\\Scripts\\huddle.exe');
  assert.deepEqual(resolveServerCommand([], lookup(['C:\\Python\\python.exe'], win))?.args, ['-m', 'huddle.cli', 'lsp']);
});

test('which skips empty PATH entries and takes the first match', () => {
  const l = lookup(['/b/huddle', '/c/huddle'], { pathEnv: '::/a:/b:/c' });
  assert.equal(which('huddle', l), '/b/huddle');
  assert.equal(which('nothing', l), undefined);
});
