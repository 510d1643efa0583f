// Huddle's request channel on the page's own websocket (y-websocket message type 100, the hub's
// RPC: huddle/protocol.py): the same requests huddle lsp makes, so the hub applies the same
// limits, privacy rules and audit log to the page as to editors. A request's notifications
// (`complete/partial`, `summary/partial`, `summary/progress`) arrive before its response.

import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import type { WebsocketProvider } from 'y-websocket'

const MESSAGE_HUDDLE = 100

/** huddle/protocol.py's HubMethod and HubNotification. */
export const HubMethod = { complete: 'complete', completionOutcome: 'completion_outcome', summarize: 'summarize' } as const
export const HubNotification = {
  completePartial: 'complete/partial',
  summaryPartial: 'summary/partial',
  summaryProgress: 'summary/progress'
} as const

/** A request that failed: `code` is the hub's ErrorCode (or offline / disconnected / cancelled
 * here), `message` is for people. */
export class RpcError extends Error {
  constructor (readonly code: string, message: string) { super(message) }
}

export type OnNotification = (method: string, params: Record<string, unknown>) => void

/** A request in flight: `result` settles once; `cancel` asks the hub to stop it (RpcCancel). */
export interface Call<T> {
  readonly result: Promise<T>
  cancel: () => void
}

interface Pending {
  resolve: (result: unknown) => void
  reject: (error: RpcError) => void
  onNotification: OnNotification | null
}

export class Rpc {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()

  constructor (private readonly provider: WebsocketProvider) {
    provider.messageHandlers[MESSAGE_HUDDLE] = (_encoder, decoder) => {
      this.receive(decoding.readVarUint8Array(decoder))
    }
    // A request does not outlive its connection: the hub cancels it when the socket closes.
    provider.on('status', ({ status }) => {
      if (status !== 'connected') this.failAll(new RpcError('disconnected', 'lost the hub connection'))
    })
  }

  get connected (): boolean { return this.provider.wsconnected }

  /** Ask the hub; the result is the method's result object (huddle/protocol.py). */
  call<T> (method: string, params: Record<string, unknown>, onNotification: OnNotification | null = null): Call<T> {
    const id = this.nextId++
    const result = new Promise<T>((resolve, reject) => {
      if (!this.send({ kind: 'request', id, method, params })) {
        reject(new RpcError('offline', 'not connected to the hub'))
        return
      }
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject, onNotification })
    })
    const cancel = (): void => {
      const call = this.pending.get(id)
      if (call === undefined) return
      this.pending.delete(id)
      this.send({ kind: 'cancel', id })
      call.reject(new RpcError('cancelled', 'cancelled'))
    }
    return { result, cancel }
  }

  private send (message: Record<string, unknown>): boolean {
    const ws = this.provider.ws
    if (ws === null || !this.provider.wsconnected || ws.readyState !== WebSocket.OPEN) return false
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_HUDDLE)
    encoding.writeVarUint8Array(encoder, new TextEncoder().encode(JSON.stringify(message)))
    ws.send(encoding.toUint8Array(encoder))
    return true
  }

  private receive (payload: Uint8Array): void {
    let message: unknown
    try {
      message = JSON.parse(new TextDecoder().decode(payload))
    } catch {
      return // the hub only sends JSON: nothing to answer to
    }
    if (!isObject(message) || typeof message.id !== 'number') return
    const call = this.pending.get(message.id)
    if (call === undefined) return // a request already answered or cancelled
    if (message.kind === 'notification' && typeof message.method === 'string') {
      call.onNotification?.(message.method, isObject(message.params) ? message.params : {})
    } else if (message.kind === 'response') {
      this.pending.delete(message.id)
      const error = message.error
      if (isObject(error)) call.reject(new RpcError(String(error.code), String(error.message)))
      else call.resolve(message.result)
    }
  }

  private failAll (error: RpcError): void {
    const calls = [...this.pending.values()]
    this.pending.clear()
    for (const call of calls) call.reject(error)
  }
}

export function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
