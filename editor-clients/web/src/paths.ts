// Room paths as the hub and huddle lsp accept them: relative POSIX, no empty, '.' or '..' part.
// A plain Yjs client can put anything under `files`; the page lists only these, as Y.Text.

import * as Y from 'yjs'

export function validPath (path: string): boolean {
  const parts = path.split('/')
  return path.length > 0 && path.length <= 1024 && parts.every((p) => p !== '' && p !== '.' && p !== '..')
}

/** The room's files the page shows: valid paths holding a Y.Text, sorted. */
export function roomFiles (files: Y.Map<unknown>): string[] {
  const found: string[] = []
  files.forEach((value, path) => {
    if (value instanceof Y.Text && validPath(path)) found.push(path)
  })
  return found.sort()
}
