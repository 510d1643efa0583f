// Presence in the shape huddle lsp publishes (huddle/lsp/presence.py), so editors see the page
// and the page sees editors: {user: {name, color}, file, cursor: {anchor, head}}, the cursor as
// Yjs relative positions (JSON) into files[file]. The hub overwrites user.name with the token's
// user, so a name cannot be forged either way.

import * as Y from 'yjs'
import type { Awareness } from 'y-protocols/awareness'
import { digest } from 'lib0/hash/sha256'
import { Annotation, type Extension, type Range } from '@codemirror/state'
import { Decoration, type DecorationSet, type EditorView, ViewPlugin, type ViewUpdate, WidgetType } from '@codemirror/view'

// huddle/lsp/session.py's PALETTE and color_for: a user has the same colour in every client.
const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324']

export function colorFor (user: string): string {
  return PALETTE[digest(new TextEncoder().encode(user))[0] % PALETTE.length]
}

const COLOR = /^#[0-9a-fA-F]{6}$/
const FALLBACK = '#888888'

export interface Cursor { anchor: unknown, head: unknown }

/** A teammate's awareness state, read defensively: any Yjs client can write anything there. */
export interface Peer {
  clientId: number
  name: string
  color: string
  file: string | null
  cursor: Cursor | null
}

export function peersOf (awareness: Awareness): Peer[] {
  const found: Peer[] = []
  awareness.getStates().forEach((state, clientId) => {
    if (clientId === awareness.clientID) return
    const user = isObject(state.user) ? state.user : {}
    const cursor = isObject(state.cursor) ? { anchor: state.cursor.anchor, head: state.cursor.head } : null
    found.push({
      clientId,
      name: typeof user.name === 'string' ? user.name : '',
      color: typeof user.color === 'string' && COLOR.test(user.color) ? user.color.toLowerCase() : FALLBACK,
      file: typeof state.file === 'string' ? state.file : null,
      cursor
    })
  })
  return found.sort((a, b) => a.name.localeCompare(b.name) || a.clientId - b.clientId)
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

// Colours reach the page from teammates, and the CSP allows no style attributes (nor should it:
// y-codemirror.next's own remote selections use them, which is why the page draws its own).
// One class per colour, its rule in a constructed stylesheet (CSSOM, which CSP does not govern).
const sheet = new CSSStyleSheet()
document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet]
const colorClasses = new Set<string>()

export function colorClass (color: string): string {
  const hex = (COLOR.test(color) ? color : FALLBACK).slice(1).toLowerCase()
  const name = `hd-c-${hex}`
  if (!colorClasses.has(name)) {
    colorClasses.add(name)
    sheet.insertRule(`.${name} { --hd-color: #${hex}; --hd-light: #${hex}33; }`)
  }
  return name
}

/** The page's own state, published only when it changes. */
export class LocalPresence {
  private published = ''

  constructor (private readonly awareness: Awareness, readonly user: string, readonly color: string) {
    this.set(null, null)
  }

  set (file: string | null, cursor: Cursor | null): void {
    const state: Record<string, unknown> = { user: { name: this.user, color: this.color } }
    if (file !== null) state.file = file
    if (file !== null && cursor !== null) state.cursor = cursor
    const encoded = JSON.stringify(state)
    if (encoded === this.published) return
    this.published = encoded
    this.awareness.setLocalState(state)
  }
}

/** The relative positions of a selection in `ytext` (UTF-16 offsets, as CodeMirror's). */
export function cursorIn (ytext: Y.Text, anchor: number, head: number): Cursor {
  const at = (index: number): unknown => Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, index))
  return { anchor: at(anchor), head: at(head) }
}

/** Where a relative position from a teammate lands in `ytext`, or null (another file, an item
 * this replica has not received yet, or garbage). */
export function indexIn (ytext: Y.Text, relative: unknown): number | null {
  if (!isObject(relative) || ytext.doc === null) return null
  try {
    const absolute = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(relative), ytext.doc)
    return absolute !== null && absolute.type === ytext ? absolute.index : null
  } catch {
    return null
  }
}

class Caret extends WidgetType {
  constructor (readonly name: string, readonly color: string) { super() }

  eq (other: Caret): boolean { return other.name === this.name && other.color === this.color }

  toDOM (): HTMLElement {
    const caret = document.createElement('span')
    caret.className = `hd-caret ${colorClass(this.color)}`
    caret.dataset.name = this.name // drawn by CSS (::after), so it is not part of the line's text
    caret.title = this.name
    return caret
  }

  ignoreEvent (): boolean { return true }
}

const refresh = Annotation.define<true>()

/** Teammates' cursors and selections in the file `path` (held in `ytext`), in their colours. */
export function remoteCursors (awareness: Awareness, ytext: Y.Text, path: string): Extension {
  return ViewPlugin.fromClass(class {
    decorations: DecorationSet
    private scheduled = false
    private destroyed = false
    private readonly onChange = (): void => {
      // Awareness changes arrive during the page's own updates too (its cursor): redraw after.
      if (this.scheduled) return
      this.scheduled = true
      queueMicrotask(() => {
        this.scheduled = false
        if (!this.destroyed) this.view.dispatch({ annotations: refresh.of(true) })
      })
    }

    constructor (readonly view: EditorView) {
      this.decorations = this.build()
      awareness.on('change', this.onChange)
    }

    update (update: ViewUpdate): void {
      if (update.docChanged || update.transactions.some((tr) => tr.annotation(refresh) === true)) {
        this.decorations = this.build()
      }
    }

    destroy (): void {
      this.destroyed = true
      awareness.off('change', this.onChange)
    }

    build (): DecorationSet {
      const length = this.view.state.doc.length
      const ranges: Array<Range<Decoration>> = []
      for (const peer of peersOf(awareness)) {
        if (peer.file !== path || peer.cursor === null) continue
        const head = indexIn(ytext, peer.cursor.head)
        if (head === null) continue
        const anchor = indexIn(ytext, peer.cursor.anchor) ?? head
        const [from, to, at] = [Math.min(anchor, head, length), Math.min(Math.max(anchor, head), length), Math.min(head, length)]
        if (from < to) ranges.push(Decoration.mark({ class: `hd-sel ${colorClass(peer.color)}` }).range(from, to))
        ranges.push(Decoration.widget({ widget: new Caret(peer.name, peer.color), side: head > anchor ? -1 : 1 }).range(at))
      }
      return Decoration.set(ranges, true)
    }
  }, { decorations: (plugin) => plugin.decorations })
}
