import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { InviteError, parseInvite, tokenClaims, validRoom } from '../../src/core/invite';

const NOW = Date.UTC(2026, 0, 1) ;

/** A token shaped like the hub's (HS256 JWT); the signature is not checked client-side. */
function jwt(claims: Record<string, unknown>): string {
  const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2lnbmF0dXJl`;
}

const claims = { iss: 'huddle', room: 'acme/webapp', sub: 'bob', role: 'edit', iat: NOW / 1000, exp: NOW / 1000 + 3600 };
const token = jwt(claims);

describe('parseInvite', () => {
  test('the link huddle invite prints', () => {
    const invite = parseInvite(`ws://127.0.0.1:8765/acme/webapp?token=${token}`, NOW);
    assert.deepEqual(invite, {
      hub: 'ws://127.0.0.1:8765',
      room: 'acme/webapp',
      token,
      claims: { room: 'acme/webapp', user: 'bob', role: 'edit', expires: NOW / 1000 + 3600 },
    });
  });

  test('the whole "join:" line, with spaces and angle brackets', () => {
    const invite = parseInvite(`  join:  <wss://hub.example.com/acme/webapp?token=${token}>\n`, NOW);
    assert.equal(invite.hub, 'wss://hub.example.com');
    assert.equal(invite.room, 'acme/webapp');
  });

  test('http(s) links become ws(s)', () => {
    assert.equal(parseInvite(`https://hub.example.com/acme/webapp?token=${token}`, NOW).hub, 'wss://hub.example.com');
    assert.equal(parseInvite(`http://hub:80/acme/webapp?token=${token}`, NOW).hub, 'ws://hub');
  });

  test('a hub under a path prefix: the token says where the room starts', () => {
    const invite = parseInvite(`wss://example.com/tools/huddle/acme/webapp?token=${token}`, NOW);
    assert.equal(invite.hub, 'wss://example.com/tools/huddle');
    assert.equal(invite.room, 'acme/webapp');
  });

  test('an opaque token: the whole path is the room', () => {
    const invite = parseInvite('ws://localhost:9000/team/x?token=opaque', NOW);
    assert.deepEqual(invite, { hub: 'ws://localhost:9000', room: 'team/x', token: 'opaque', claims: {} });
  });

  test('percent-encoded room names are decoded', () => {
    const invite = parseInvite('ws://h:1/team/a%40b?token=t', NOW);
    assert.equal(invite.room, 'team/a@b');
  });

  test('query parameters other than the token are ignored', () => {
    assert.equal(parseInvite('ws://h:1/r?x=1&token=abc&y=2', NOW).token, 'abc');
  });

  const bad: [string, RegExp][] = [
    ['not a link', /not a link/],
    ['ftp://h/r?token=t', /ws:\/\/ or wss:\/\//],
    ['ws://h:1/room', /no \?token=/],
    ['ws://h:1/room?token=', /no \?token=/],
    ['ws://h:1/?token=t', /names no room/],
    ['ws://h:1/-bad?token=t', /invalid room name/],
    ['ws://h:1/a/b%20c?token=t', /invalid room name/],
    ['ws://h:1/a/%E0%A4%A?token=t', /malformed/],
  ];
  for (const [text, message] of bad) {
    test(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseInvite(text, NOW), (error: unknown) => error instanceof InviteError && message.test(error.message));
    });
  }

  test('refuses an expired invite, naming when it expired', () => {
    const old = jwt({ ...claims, exp: NOW / 1000 - 1 });
    assert.throws(() => parseInvite(`ws://h:1/acme/webapp?token=${old}`, NOW), /expired at 2025-12-31T23:59:59/);
  });
});

describe('tokenClaims', () => {
  test('reads room, user, role and expiry', () => {
    assert.deepEqual(tokenClaims(jwt({ room: 'r', sub: 'ann', role: 'read', exp: 5 })), {
      room: 'r',
      user: 'ann',
      role: 'read',
      expires: 5,
    });
  });

  test('ignores what is malformed', () => {
    assert.deepEqual(tokenClaims('a.b.c'), {});
    assert.deepEqual(tokenClaims('abc'), {});
    assert.deepEqual(tokenClaims(jwt({ room: 1, sub: null, role: 'admin' })), {});
    assert.deepEqual(tokenClaims(`x.${Buffer.from('[1]').toString('base64url')}.y`), {});
  });

  test('decodes non-ASCII names', () => {
    assert.equal(tokenClaims(jwt({ sub: 'Zoë 🦊' })).user, 'Zoë 🦊');
  });
});

test('validRoom follows the hub', () => {
  assert.ok(validRoom('acme/webapp'));
  assert.ok(validRoom('a.b_c~d@e+f-g'));
  assert.ok(!validRoom(''));
  assert.ok(!validRoom('/abs'));
  assert.ok(!validRoom('a//b'));
  assert.ok(!validRoom('a/../b'));
  assert.ok(!validRoom('x'.repeat(201)));
});
