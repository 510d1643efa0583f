// Inline completion as ghost text, from the hub's `complete` request (the hub builds the prompt
// from its copy of the room, which already holds this page's keystrokes: the request carries the
// page's state vector, and the cursor as a Yjs relative position, as huddle lsp sends them).
// Asked once the user pauses typing; the next key cancels it on the hub. Partials show as they
// stream; Tab accepts (an insert through the CRDT, like typing), Escape or typing dismisses.

import * as Y from 'yjs'
import { toBase64 } from 'lib0/buffer'
import { type Extension, Prec, StateEffect, StateField, type Transaction } from '@codemirror/state'
import { Decoration, EditorView, ViewPlugin, type ViewUpdate, WidgetType, keymap } from '@codemirror/view'
import { ySyncAnnotation } from 'y-codemirror.next'
import { type Call, HubMethod, HubNotification, type Rpc, RpcError, isObject } from './rpc'

/** How long the user pauses typing before the page asks (VS Code and Copilot wait about as long). */
export const PAUSE_MS = 250
const ACCEPT_EVENT = 'input.complete'

/** `final`: the model has finished (a partial may still grow). */
interface Ghost { at: number, text: string, final: boolean }

const setGhost = StateEffect.define<Ghost | null>()

class GhostWidget extends WidgetType {
  constructor (readonly text: string, readonly final: boolean) { super() }
  eq (other: GhostWidget): boolean { return other.text === this.text && other.final === this.final }
  toDOM (): HTMLElement {
    const span = document.createElement('span')
    span.className = 'hd-ghost' // styled by class: the CSP forbids style attributes
    span.textContent = this.text
    span.dataset.final = String(this.final)
    return span
  }

  ignoreEvent (): boolean { return true }
}

const fromTeammate = (tr: Transaction): boolean => tr.annotation(ySyncAnnotation) !== undefined

const ghostField = StateField.define<Ghost | null>({
  create: () => null,
  update (ghost, tr) {
    for (const effect of tr.effects) if (effect.is(setGhost)) return effect.value
    if (ghost === null) return null
    if (tr.docChanged && !fromTeammate(tr)) return null // the user typed: dismissed
    const at = tr.changes.mapPos(ghost.at, 1)
    // The cursor moved away from where the completion was asked for: dismissed.
    return tr.state.selection.main.empty && tr.state.selection.main.head === at ? { ...ghost, at } : null
  },
  provide: (field) => EditorView.decorations.from(field, (ghost) =>
    ghost === null ? Decoration.none : Decoration.set([Decoration.widget({ widget: new GhostWidget(ghost.text, ghost.final), side: 1 }).range(ghost.at)]))
})

/** The completion shown in `view`, if any (the tests and the Tab key read it). */
export function shownGhost (view: EditorView): Ghost | null {
  return view.state.field(ghostField, false) ?? null
}

/** Ghost-text completions for the file `path` held in `ytext` of `doc`. */
export function inlineCompletion (rpc: Rpc, doc: Y.Doc, ytext: Y.Text, path: string): Extension {
  const asker = ViewPlugin.fromClass(class {
    private timer: ReturnType<typeof setTimeout> | null = null
    private call: Call<unknown> | null = null
    private at = 0 // where the request in flight was asked, mapped through teammates' edits

    constructor (readonly view: EditorView) {}

    update (update: ViewUpdate): void {
      const typed = update.transactions.some((tr) =>
        !tr.isUserEvent(ACCEPT_EVENT) && (tr.isUserEvent('input') || tr.isUserEvent('delete')))
      if (typed) {
        this.stop()
        this.timer = setTimeout(() => this.ask(), PAUSE_MS)
      } else if (this.call !== null || this.timer !== null) {
        if (update.docChanged) this.at = update.changes.mapPos(this.at, 1)
        const { main } = update.state.selection
        const moved = update.transactions.some((tr) => tr.selection !== undefined && !fromTeammate(tr))
        if (moved && !(main.empty && main.head === this.at && this.call !== null)) this.stop()
      }
    }

    destroy (): void { this.stop() }

    /** Cancel what is asked or about to be (on the hub too: it closes the model's stream). */
    stop (): void {
      if (this.timer !== null) clearTimeout(this.timer)
      this.timer = null
      this.call?.cancel()
      this.call = null
    }

    ask (): void {
      this.timer = null
      const { main } = this.view.state.selection
      if (!main.empty || !rpc.connected) return
      const at = main.head
      this.at = at
      const call = rpc.call<unknown>(HubMethod.complete, completeParams(doc, ytext, path, at), (method, params) => {
        if (method === HubNotification.completePartial && typeof params.text === 'string') this.show(call, params.text, false)
      })
      this.call = call
      call.result.then((result) => {
        if (isObject(result) && typeof result.text === 'string') this.show(call, result.text, true)
        if (this.call === call) this.call = null
      }, (error: unknown) => {
        if (this.call === call) this.call = null
        // Cancelled (the user typed on, or a newer request of theirs won on the hub), or the
        // connection went: nothing to show. Another failure is the hub's to log and audit.
        if (error instanceof RpcError && !['cancelled', 'disconnected', 'offline'].includes(error.code)) {
          console.warn(`Huddle AI: ${error.message}`)
        }
      })
    }

    show (call: Call<unknown>, text: string, final: boolean): void {
      if (this.call !== call) return
      const { main } = this.view.state.selection
      if (!main.empty || main.head !== this.at) return
      this.view.dispatch({ effects: setGhost.of(text === '' ? null : { at: this.at, text, final }) })
    }
  })

  const accept = (view: EditorView): boolean => {
    const ghost = shownGhost(view)
    if (ghost === null) return false
    view.plugin(asker)?.stop()
    view.dispatch({
      changes: { from: ghost.at, insert: ghost.text },
      selection: { anchor: ghost.at + ghost.text.length },
      effects: setGhost.of(null),
      userEvent: ACCEPT_EVENT,
      scrollIntoView: true
    })
    return true
  }
  const dismiss = (view: EditorView): boolean => {
    if (shownGhost(view) === null) return false
    view.plugin(asker)?.stop()
    view.dispatch({ effects: setGhost.of(null) })
    return true
  }
  // Highest precedence: Tab accepts before indentWithTab indents (it indents when nothing shows).
  return [ghostField, asker, Prec.highest(keymap.of([{ key: 'Tab', run: accept }, { key: 'Escape', run: dismiss }]))]
}

/** huddle/protocol.py's CompleteParams for the cursor at `at` (UTF-16, CodeMirror's and Yjs's). */
function completeParams (doc: Y.Doc, ytext: Y.Text, path: string, at: number): Record<string, unknown> {
  const length = ytext.length
  // Stuck to the character after the cursor, or at the end to the one before, as huddle lsp does;
  // none in an empty file (the hub reads that as its start).
  const cursor = length === 0
    ? null
    : Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, Math.min(at, length), at < length ? 0 : -1))
  return {
    path,
    cursor,
    offset: [...ytext.toString().slice(0, at)].length, // code points, if the hub lacks the anchor
    state: toBase64(Y.encodeStateVector(doc))
  }
}
