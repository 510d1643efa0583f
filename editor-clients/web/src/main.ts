// The browser client `huddle serve` serves at /<room>: the room's files, a CodeMirror 6 editor
// bound to the open file's Y.Text (y-codemirror.next), teammates' cursors, who is here, follow,
// and the connection's state. Schema: doc.getMap('files'), Y.Text by workspace-relative path.

import './style.css'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { EditorState } from '@codemirror/state'
import {
  EditorView, drawSelection, highlightActiveLine, highlightActiveLineGutter, highlightSpecialChars, keymap, lineNumbers
} from '@codemirror/view'
import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { bracketMatching, defaultHighlightStyle, syntaxHighlighting } from '@codemirror/language'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { inlineCompletion } from './completion'
import { watchConnection } from './connection'
import { readJoin } from './join'
import { languageFor } from './languages'
import { roomFiles, validPath } from './paths'
import { LocalPresence, colorClass, colorFor, cursorIn, indexIn, peersOf, remoteCursors } from './presence'
import { Rpc } from './rpc'
import { SummaryPanel } from './summary'
import { drawTree } from './tree'

// The CSP nonce of this response, for the <style> CodeMirror adds where constructed stylesheets
// are unsupported (a classic script: module scripts have no currentScript).
const nonce = (document.currentScript as HTMLScriptElement | null)?.nonce ?? ''

function element (id: string): HTMLElement {
  const found = document.getElementById(id)
  if (found === null) throw new Error(`the page has no #${id}`)
  return found
}

interface Open { path: string, text: Y.Text, view: EditorView }

function start (): void {
  const join = readJoin(location, history, sessionStorage)
  const [status, filesList, peopleList, fileName, editorBox, notice] =
    ['status', 'files', 'people', 'file-name', 'editor', 'notice'].map(element)
  element('room').textContent = join.room
  element('role').textContent = join.role === 'read' ? 'read only' : ''
  document.body.dataset.role = join.role
  const say = (text: string): void => { notice.textContent = text }
  if (join.token === null) {
    status.dataset.state = 'refused'
    status.textContent = 'no token'
    say('This link has no token: ask a teammate for an invite link (huddle invite).')
    return
  }

  const doc = new Y.Doc()
  const files = doc.getMap<unknown>('files')
  // disableBc: two tabs of one browser would otherwise pass updates to each other through a
  // BroadcastChannel, around the hub (a read-only tab's through an editing one).
  const provider = new WebsocketProvider(join.hub, join.room, doc, { params: { token: join.token }, disableBc: true })
  const awareness = provider.awareness
  const me = new LocalPresence(awareness, join.user, colorFor(join.user))
  watchConnection(provider, status)
  const rpc = new Rpc(provider)
  const summaries = new SummaryPanel(rpc, {
    panel: element('summary'),
    title: element('summary-title'),
    status: element('summary-status'),
    text: element('summary-text'),
    cancel: element('summary-cancel') as HTMLButtonElement,
    close: element('summary-close') as HTMLButtonElement
  })
  const summarizeFile = element('summarize-file') as HTMLButtonElement
  summarizeFile.addEventListener('click', () => { if (current !== null) summaries.run('file', current.path) })
  element('catch-up').addEventListener('click', () => summaries.run('catch_up', null))
  let current: Open | null = null
  let following: string | null = null

  const drawFiles = (): void => {
    drawTree(filesList, roomFiles(files), current?.path ?? null, (path) => {
      follow(null) // choosing a file yourself stops following, as in the editors
      open(path)
    })
  }

  const open = (path: string | null): void => {
    current?.view.destroy()
    current = null
    editorBox.replaceChildren()
    const text = path === null ? undefined : files.get(path)
    if (path === null || !(text instanceof Y.Text)) {
      fileName.textContent = ''
      summarizeFile.disabled = true
      delete editorBox.dataset.path
      me.set(null, null)
      drawFiles()
      return
    }
    say('')
    fileName.textContent = path
    summarizeFile.disabled = false
    editorBox.dataset.path = path
    const view = new EditorView({
      parent: editorBox,
      state: EditorState.create({
        doc: text.toString(),
        extensions: [
          lineNumbers(),
          highlightActiveLineGutter(),
          highlightSpecialChars(),
          drawSelection(),
          highlightActiveLine(),
          bracketMatching(),
          syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
          keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
          languageFor(path),
          // Remote cursors are drawn by presence.ts (the CSP forbids y-codemirror.next's inline styles).
          yCollab(text, null, { undoManager: new Y.UndoManager(text) }),
          remoteCursors(awareness, text, path),
          // Readers get no completions: they could not accept one (the hub would drop the edit).
          join.role === 'read' ? [] : inlineCompletion(rpc, doc, text, path),
          EditorState.readOnly.of(join.role === 'read'),
          EditorView.cspNonce.of(nonce),
          EditorView.contentAttributes.of({ 'aria-label': path }),
          EditorView.updateListener.of((update) => {
            if (update.selectionSet || update.docChanged) {
              const { anchor, head } = update.state.selection.main
              me.set(path, cursorIn(text, anchor, head))
            }
          })
        ]
      })
    })
    current = { path, text, view }
    me.set(path, cursorIn(text, 0, 0))
    drawFiles()
  }

  const follow = (name: string | null): void => {
    following = name
    drawPeople()
    followStep()
  }

  // Following: open the file the teammate is in, and keep their cursor in view.
  const followStep = (): void => {
    if (following === null) return
    const peer = peersOf(awareness).find((p) => p.name === following)
    if (peer === undefined || peer.file === null) return // they may come back: keep following
    if (peer.file !== current?.path && validPath(peer.file) && files.get(peer.file) instanceof Y.Text) open(peer.file)
    if (current !== null && peer.file === current.path && peer.cursor !== null) {
      const at = indexIn(current.text, peer.cursor.head)
      if (at !== null) {
        current.view.dispatch({ effects: EditorView.scrollIntoView(Math.min(at, current.view.state.doc.length), { y: 'nearest' }) })
      }
    }
  }

  const drawPeople = (): void => {
    const rows = [{ name: me.user, color: me.color, file: current?.path ?? null, clientId: awareness.clientID, you: true },
      ...peersOf(awareness).map((p) => ({ ...p, you: false }))]
    peopleList.replaceChildren(...rows.map((row) => {
      const item = document.createElement('li')
      item.dataset.name = row.name
      item.dataset.client = String(row.clientId)
      const dot = document.createElement('span')
      dot.className = `hd-dot ${colorClass(row.color)}`
      const name = document.createElement('span')
      name.className = 'hd-name'
      name.textContent = row.you ? `${row.name} (you)` : row.name
      const where = document.createElement('span')
      where.className = 'hd-where'
      where.textContent = row.file ?? ''
      item.append(dot, name, where)
      if (!row.you) {
        item.classList.add('hd-followable')
        item.title = following === row.name ? `Stop following ${row.name}` : `Follow ${row.name}`
        if (following === row.name) item.setAttribute('aria-current', 'true')
        item.addEventListener('click', () => follow(following === row.name ? null : row.name))
      }
      return item
    }))
    element('following').textContent = following === null ? '' : `following ${following}`
  }

  awareness.on('change', ({ added, updated, removed }: { added: number[], updated: number[], removed: number[] }) => {
    if ([...added, ...updated, ...removed].every((id) => id === awareness.clientID)) return
    // Deferred: an awareness change can arrive while the editor is in the middle of an update.
    queueMicrotask(() => { drawPeople(); followStep() })
  })

  files.observe((event) => {
    drawFiles()
    const shown = current
    if (shown !== null && event.keysChanged.has(shown.path) && files.get(shown.path) !== shown.text) {
      const replaced = files.get(shown.path) instanceof Y.Text
      open(replaced ? shown.path : null)
      if (!replaced) say(`${shown.path} was removed from the room.`)
    }
  })

  provider.once('sync', () => {
    if (current !== null) return
    const paths = roomFiles(files)
    const teammates = peersOf(awareness).map((p) => p.file).filter((f): f is string => f !== null && paths.includes(f))
    open(teammates[0] ?? paths[0] ?? null)
  })

  drawFiles()
  drawPeople()
}

start()
