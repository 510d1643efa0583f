// What the join link says: the room is the page's path, the token its fragment
// (`http://host:port/<room>#token=...`). A fragment is never sent to the server and never in a
// Referer, so the token stays out of the hub's access logs; the page then takes it out of the
// address bar (kept in sessionStorage for a reload of this tab only).

export type Role = 'edit' | 'read'

export interface Join {
  room: string
  token: string | null
  /** The token's user: the name the hub publishes this page's presence under. */
  user: string
  role: Role
  /** Where the page's websocket goes: the origin it was served from (CSP connect-src 'self'). */
  hub: string
}

const STORAGE_PREFIX = 'huddle-token:'

export function readJoin (location: Location, history: History, storage: Storage): Join {
  const room = decodeURIComponent(location.pathname.slice(1)).replace(/\/$/, '')
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('token')
  let token = fromLink
  if (fromLink !== null) {
    storage.setItem(STORAGE_PREFIX + room, fromLink)
    history.replaceState(null, '', location.pathname + location.search)
  } else {
    token = storage.getItem(STORAGE_PREFIX + room)
  }
  const claims = token === null ? {} : readClaims(token)
  return {
    room,
    token,
    user: typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : 'guest',
    // Display only: the hub verifies the token and enforces the role whatever the page believes.
    role: claims.role === 'read' ? 'read' : 'edit',
    hub: `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}`
  }
}

/** A JWT's claims, read without verifying it (only the hub can). */
function readClaims (token: string): Record<string, unknown> {
  const payload = token.split('.')[1]
  if (payload === undefined) return {}
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'))
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0))
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes))
    return typeof claims === 'object' && claims !== null ? claims as Record<string, unknown> : {}
  } catch {
    return {}
  }
}
