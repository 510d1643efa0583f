// Syntax by file extension: the few languages the bundle carries (each costs bundle size).

import type { Extension } from '@codemirror/state'
import { python } from '@codemirror/lang-python'
import { javascript } from '@codemirror/lang-javascript'
import { markdown } from '@codemirror/lang-markdown'
import { json } from '@codemirror/lang-json'

const BY_EXTENSION: Record<string, () => Extension> = {
  py: () => python(),
  pyi: () => python(),
  js: () => javascript(),
  mjs: () => javascript(),
  cjs: () => javascript(),
  jsx: () => javascript({ jsx: true }),
  ts: () => javascript({ typescript: true }),
  mts: () => javascript({ typescript: true }),
  tsx: () => javascript({ typescript: true, jsx: true }),
  md: () => markdown(),
  markdown: () => markdown(),
  json: () => json()
}

/** The language of `path` by its extension; none (plain text) when unknown. */
export function languageFor (path: string): Extension {
  const name = path.slice(path.lastIndexOf('/') + 1)
  const dot = name.lastIndexOf('.')
  const make = dot > 0 ? BY_EXTENSION[name.slice(dot + 1).toLowerCase()] : undefined
  return make === undefined ? [] : make()
}
