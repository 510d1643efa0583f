// The room's files as a tree, drawn again whenever `files` gains or loses a key. Names are set
// as text, never as HTML: a path comes from whoever wrote the room.

interface Folder { folders: Map<string, Folder>, files: Array<[string, string]> }

function folderOf (paths: string[]): Folder {
  const root: Folder = { folders: new Map(), files: [] }
  for (const path of paths) {
    const parts = path.split('/')
    let folder = root
    for (const part of parts.slice(0, -1)) {
      let next = folder.folders.get(part)
      if (next === undefined) {
        next = { folders: new Map(), files: [] }
        folder.folders.set(part, next)
      }
      folder = next
    }
    folder.files.push([parts[parts.length - 1], path])
  }
  return root
}

export function drawTree (list: HTMLElement, paths: string[], current: string | null, open: (path: string) => void): void {
  const draw = (folder: Folder, into: HTMLElement): void => {
    for (const [name, sub] of [...folder.folders].sort(([a], [b]) => a.localeCompare(b))) {
      const item = document.createElement('li')
      item.className = 'hd-folder'
      const label = document.createElement('span')
      label.textContent = name
      const children = document.createElement('ul')
      draw(sub, children)
      item.append(label, children)
      into.append(item)
    }
    for (const [name, path] of folder.files.sort(([a], [b]) => a.localeCompare(b))) {
      const item = document.createElement('li')
      const button = document.createElement('button')
      button.type = 'button'
      button.className = 'hd-file'
      button.textContent = name
      button.title = path
      button.dataset.path = path
      if (path === current) button.setAttribute('aria-current', 'true')
      button.addEventListener('click', () => open(path))
      item.append(button)
      into.append(item)
    }
  }
  list.replaceChildren()
  draw(folderOf(paths), list)
  if (paths.length === 0) {
    const empty = document.createElement('li')
    empty.className = 'hd-empty'
    empty.textContent = 'No shared files yet'
    list.append(empty)
  }
}
