// Inline completion as ghost text, from the hub's `complete` request (the hub builds the prompt
// from its copy of the room, which already holds this page's keystrokes: the request carries the
// page's state vector, and the cursor as a Yjs relative position, as huddle lsp sends them).
// Asked once the user pauses typing; the next key cancels it on the hub. Partials show as they
// stream; Tab accepts (an insert through the CRDT, like typing), Ctrl+Right (Cmd+Right) takes its
// next word, Escape or typing dismisses. What became of each completion the hub named (its `id`)
// goes back to the hub (`completion_outcome`, as huddle lsp reports editors'), once.

import * as Y from 'yjs'
import { toBase64 } from 'lib0/buffer'
import { type Extension, Prec, StateEffect, StateField, type Transaction } from '@codemirror/state'
import { Decoration, EditorView, ViewPlugin, type ViewUpdate, WidgetType, keymap } from '@codemirror/view'
import { ySyncAnnotation } from 'y-codemirror.next'
import { type Call, HubMethod, HubNotification, type Rpc, RpcError, isObject } from './rpc'

/** How long the user pauses typing before the page asks (VS Code and Copilot wait about as long). */
export const PAUSE_MS = 250
const ACCEPT_EVENT = 'input.complete' // Tab; its subtype `.word` for Ctrl+Right
const WORD_EVENT = `${ACCEPT_EVENT}.word`

/** `final`: the model has finished (a partial may still grow). `id`: the hub's name for the
 * completion (with its final text), null while it streams. `taken`: code points of it already
 * inserted by Ctrl+Right (`text` is the rest). */
interface Ghost { at: number, text: string, final: boolean, id: string | null, taken: number }

/** huddle/protocol.py's CompletionOutcomeParams. */
type Outcome = { id: string, outcome: 'accepted' | 'partly' | 'ignored', accepted_chars: number, source: 'editor' }

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

const codePoints = (text: string): number => [...text].length // the hub counts code points

/** The outcome of `ghost`, taken away: all of it was inserted (`accepted`), or `typed`
 * (inserted at it by the user) and what Ctrl+Right took. A key that types its start is that
 * much of it taken, as huddle lsp reads an editor's changes. */
function outcomeOf (ghost: Ghost & { id: string }, accepted: boolean, typed: string | null): Outcome {
  const whole = ghost.taken + codePoints(ghost.text)
  let chars = accepted ? whole : ghost.taken
  if (!accepted && typed !== null && ghost.text.startsWith(typed)) chars += codePoints(typed)
  const outcome = chars >= whole ? 'accepted' : chars > 0 ? 'partly' : 'ignored'
  return { id: ghost.id, outcome, accepted_chars: chars, source: 'editor' }
}

/** What `tr` (a user's edit) inserted at `at` alone, if that is all it changed. */
function insertedAt (tr: Transaction, at: number): string | null {
  if (!tr.docChanged || fromTeammate(tr)) return null
  let inserted: string | null = null
  let other = false
  tr.changes.iterChanges((fromA, toA, _fromB, _toB, text) => {
    if (fromA === at && toA === at && inserted === null) inserted = text.toString()
    else other = true
  })
  return other ? null : inserted
}

/** The next word of `text` as Ctrl+Right takes it (VS Code's "accept next word"): leading
 * white space, then a run of word characters or of other symbols. */
function nextWord (text: string): string {
  return /^\s*(?:[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]+)?/u.exec(text)?.[0] || text
}

/** Ghost-text completions for the file `path` held in `ytext` of `doc`. */
export function inlineCompletion (rpc: Rpc, doc: Y.Doc, ytext: Y.Text, path: string): Extension {
  const asker = ViewPlugin.fromClass(class {
    private timer: ReturnType<typeof setTimeout> | null = null
    private call: Call<unknown> | null = null
    private at = 0 // where the request in flight was asked, mapped through teammates' edits

    constructor (readonly view: EditorView) {}

    update (update: ViewUpdate): void {
      for (const tr of update.transactions) this.decide(tr)
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

    /** Report the completion `tr` took away (accepted, dismissed, or replaced), if the hub
     * named it. A word taken leaves it on offer under its id: decided later. */
    decide (tr: Transaction): void {
      const before = tr.startState.field(ghostField, false) ?? null
      const after = tr.state.field(ghostField, false) ?? null
      if (before === null || before.id === null || after?.id === before.id) return
      report({ ...before, id: before.id }, tr.isUserEvent(ACCEPT_EVENT), insertedAt(tr, before.at))
    }

    destroy (): void {
      this.stop()
      // Another file opened (or this one gone): what was on offer is ignored, or partly taken.
      const ghost = shownGhost(this.view)
      if (ghost?.id != null) report({ ...ghost, id: ghost.id }, false, null)
    }

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
        if (isObject(result) && typeof result.text === 'string') {
          this.show(call, result.text, true, typeof result.id === 'string' && result.id !== '' ? result.id : null)
        }
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

    show (call: Call<unknown>, text: string, final: boolean, id: string | null = null): void {
      if (this.call !== call) return
      const { main } = this.view.state.selection
      if (!main.empty || main.head !== this.at) return
      this.view.dispatch({ effects: setGhost.of(text === '' ? null : { at: this.at, text, final, id, taken: 0 }) })
    }
  })

  const report = (ghost: Ghost & { id: string }, accepted: boolean, typed: string | null): void => {
    // Offline or refused (a report too late, the hub restarted): the hub forgets it in time.
    rpc.call(HubMethod.completionOutcome, outcomeOf(ghost, accepted, typed)).result.catch(() => {})
  }

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
  // Ctrl+Right: the next word of a finished completion; the rest stays on offer, under its id.
  const acceptWord = (view: EditorView): boolean => {
    const ghost = shownGhost(view)
    if (ghost === null || !ghost.final) return false
    const word = nextWord(ghost.text)
    if (word === ghost.text) return accept(view)
    const at = ghost.at + word.length
    view.dispatch({
      changes: { from: ghost.at, insert: word },
      selection: { anchor: at },
      effects: setGhost.of({ ...ghost, at, text: ghost.text.slice(word.length), taken: ghost.taken + codePoints(word) }),
      userEvent: WORD_EVENT,
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
  return [ghostField, asker, Prec.highest(keymap.of([
    { key: 'Tab', run: accept },
    { key: 'Mod-ArrowRight', run: acceptWord },
    { key: 'Escape', run: dismiss }
  ]))]
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
