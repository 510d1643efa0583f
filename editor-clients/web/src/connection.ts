// The connection indicator: connected, reconnecting (the hub went away: edits are kept and merge
// when it is back), offline (the browser has no network), or refused (the hub closed with a
// 44xx code: a bad or expired token; y-websocket stops retrying).

import type { WebsocketProvider } from 'y-websocket'

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'refused'

const LABELS: Record<ConnectionState, string> = {
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  offline: 'offline',
  refused: 'refused'
}

export function watchConnection (provider: WebsocketProvider, indicator: HTMLElement): void {
  let everConnected = false
  let socket: 'connected' | 'connecting' | 'disconnected' = 'connecting'
  let refusal: string | null = null

  const show = (): void => {
    let state: ConnectionState
    if (refusal !== null) state = 'refused'
    else if (!navigator.onLine && socket !== 'connected') state = 'offline'
    else if (socket === 'connected') state = 'connected'
    else state = everConnected ? 'reconnecting' : 'connecting'
    indicator.dataset.state = state
    indicator.textContent = refusal === null ? LABELS[state] : `${LABELS[state]}: ${refusal}`
  }

  provider.on('status', ({ status }) => {
    socket = status
    if (status === 'connected') everConnected = true
    show()
  })
  provider.on('closed', ({ reason }) => {
    refusal = reason !== '' ? reason : 'the hub refused this link'
    show()
  })
  window.addEventListener('online', show)
  window.addEventListener('offline', show)
  show()
}
