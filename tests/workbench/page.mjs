// One page of a real VS Code workbench (code-server) in Debian's chromium, driven by
// tests/test_vscode_workbench.py over stdin/stdout (one JSON object a line, like tests/node/yclient.mjs).
// Usage: node page.mjs URL [CHROMIUM]
// Every wait is on the DOM (waitForSelector / waitForFunction) with a bound; a failed op answers
// {ok: false, error} with what was missing, and the test fails naming it.
import { chromium } from 'playwright-core'
import readline from 'node:readline'

const [url, executablePath = '/usr/bin/chromium'] = process.argv.slice(2)
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] })
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(url).origin })
const page = await context.newPage()
const consoleErrors = []
page.on('pageerror', (err) => consoleErrors.push(String(err)))

// The text of the active editor as Monaco draws it: its visible lines in order (the test files
// are short enough to be visible whole). Monaco draws spaces as U+00A0.
function editorLines () {
  const editor = document.querySelector('.editor-group-container.active .monaco-editor .view-lines') ??
    document.querySelector('.monaco-editor .view-lines')
  if (!editor) return null
  return Array.from(editor.querySelectorAll(':scope > .view-line'))
    .map((line) => [parseFloat(line.style.top), line.textContent.replace(/\u00a0/g, ' ')])
    .sort((a, b) => a[0] - b[0])
    .map(([, text]) => text)
}

// Decorations whose ::before/::after content names someone (a teammate's label).
function decorationsNaming (name) {
  const found = []
  for (const el of document.querySelectorAll('.monaco-editor .view-lines span[class*="ced-"]')) {
    for (const pseudo of ['::before', '::after']) {
      const content = getComputedStyle(el, pseudo).content
      if (content && content.includes(name)) found.push({ pseudo, content, className: el.className })
    }
  }
  return found
}

// Every editor group: whether it is the active one, its active tab's label, its visible lines
// with their line numbers (1-based), and the line of the cursor (Monaco marks its number).
function editorGroups () {
  const byTop = (nodes, value) => Array.from(nodes)
    .map((n) => [parseFloat((n.closest('.view-line, .margin-view-overlays > div') ?? n).style.top), value(n)])
    .sort((a, b) => a[0] - b[0])
    .map(([, v]) => v)
  return Array.from(document.querySelectorAll('.editor-group-container')).map((group) => {
    const tab = group.querySelector('.tab.active')
    const editor = group.querySelector('.monaco-editor')
    const lines = editor ? byTop(editor.querySelectorAll('.view-lines > .view-line'), (l) => l.textContent.replace(/\u00a0/g, ' ')) : []
    const numbers = editor ? byTop(editor.querySelectorAll('.margin-view-overlays .line-numbers'), (n) => Number(n.textContent)) : []
    const current = editor?.querySelector('.margin-view-overlays .line-numbers.active-line-number')
    return {
      active: group.classList.contains('active'),
      tab: tab ? tab.getAttribute('aria-label') : null,
      lines,
      numbers,
      cursorLine: current ? Number(current.textContent) : null
    }
  })
}

// VS Code's own inline suggestion in the active editor: the ghost text after the caret and any
// further lines it shows below (null when none is shown).
function ghostText () {
  const editor = document.querySelector('.editor-group-container.active .monaco-editor')
  if (!editor) return null
  const inline = Array.from(editor.querySelectorAll('.view-lines .ghost-text-decoration, .view-lines .ghost-text-decoration-preview'))
    .map((s) => s.textContent).join('')
  const below = Array.from(editor.querySelectorAll('.ghost-text .view-line')).map((l) => l.textContent)
  const text = [inline, ...below].join('\n').replace(/\u00a0/g, ' ')
  return text.length > 0 ? text : null
}

// Notifications as shown: each toast's text, and whether its progress bar runs.
function toasts () {
  return Array.from(document.querySelectorAll('.notifications-toasts .notification-toast')).map((t) => ({
    text: t.innerText,
    progress: Array.from(t.querySelectorAll('.monaco-progress-container')).some((p) => p.classList.contains('active'))
  }))
}

// Run one of the functions above in the page (they must not close over anything).
const inPage = (fn, arg) => page.evaluate(([src, a]) => new Function('return ' + src)()(a), [fn.toString(), arg])

const ops = {
  goto: async ({ timeout = 120000 }) => {
    await page.goto(url)
    await page.waitForSelector('.monaco-workbench .part.statusbar', { timeout })
    return {}
  },
  // Run a command from the palette by its title, as a user does (F1, type, Enter).
  palette: async ({ title, timeout = 30000 }) => {
    await page.keyboard.press('F1')
    const input = page.locator('.quick-input-widget input.input')
    await input.waitFor({ state: 'visible', timeout })
    await input.fill('>' + title)
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first()
    await row.waitFor({ state: 'visible', timeout })
    await row.click()
    return {}
  },
  // Type into the quick input that a command opened (Join Session's link box) and accept it.
  answer: async ({ text, timeout = 30000 }) => {
    const input = page.locator('.quick-input-widget input.input')
    await input.waitFor({ state: 'visible', timeout })
    await input.fill(text)
    await page.keyboard.press('Enter')
    await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout })
    return {}
  },
  // Quick Open a workspace file and wait until its editor is active.
  open: async ({ file, timeout = 30000 }) => {
    await page.keyboard.press('Control+P')
    const input = page.locator('.quick-input-widget input.input')
    await input.waitFor({ state: 'visible', timeout })
    await input.fill(file)
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: file.split('/').pop() }).first()
    await row.waitFor({ state: 'visible', timeout })
    await page.keyboard.press('Enter')
    await page.waitForSelector(`.tab.active[aria-label*="${file.split('/').pop()}"]`, { timeout })
    await page.locator('.editor-group-container.active .monaco-editor textarea').focus()
    return {}
  },
  key: async ({ keys }) => { for (const k of keys) await page.keyboard.press(k); return {} },
  type: async ({ text, delay = 20 }) => { await page.keyboard.type(text, { delay }); return {} },
  text: async () => ({ lines: await page.evaluate(editorLines) }),
  waitText: async ({ lines, timeout = 30000 }) => {
    try {
      await page.waitForFunction(
        ([fn, want]) => JSON.stringify(new Function('return ' + fn)()()) === JSON.stringify(want),
        [editorLines.toString(), lines], { timeout, polling: 50 })
    } catch (err) {
      throw new Error(`editor text ${JSON.stringify(await page.evaluate(editorLines))} never became ${JSON.stringify(lines)}: ${err.message.split('\n')[0]}`)
    }
    return {}
  },
  // A status bar entry whose text or label contains `text`.
  status: async ({ text, timeout = 30000 }) => {
    const item = page.locator('.part.statusbar .statusbar-item', { hasText: text }).first()
    try {
      await item.waitFor({ state: 'visible', timeout })
    } catch (err) {
      const all = await page.locator('.part.statusbar .statusbar-item').allInnerTexts()
      throw new Error(`no status bar entry with ${JSON.stringify(text)} (entries: ${JSON.stringify(all.filter(Boolean))})`)
    }
    return { text: await item.innerText() }
  },
  notification: async ({ text, timeout = 30000 }) => {
    const toast = page.locator('.notifications-toasts .notification-toast', { hasText: text }).first()
    try {
      await toast.waitFor({ state: 'visible', timeout })
    } catch {
      const all = await page.locator('.notifications-toasts .notification-toast').allInnerTexts()
      throw new Error(`no notification with ${JSON.stringify(text)} (shown: ${JSON.stringify(all)})`)
    }
    const all = await page.locator('.notifications-toasts .notification-toast').allInnerTexts()
    return { text: await toast.innerText(), all }
  },
  decoration: async ({ name, timeout = 30000 }) => {
    try {
      await page.waitForFunction(([fn, n]) => new Function('return ' + fn)()(n).length > 0,
        [decorationsNaming.toString(), name], { timeout, polling: 100 })
    } catch {
      throw new Error(`no editor decoration draws ${JSON.stringify(name)}`)
    }
    return { found: await page.evaluate(([fn, n]) => new Function('return ' + fn)()(n), [decorationsNaming.toString(), name]) }
  },
  groups: async () => ({ groups: await inPage(editorGroups) }),
  // Until the active editor shows `tab` and its visible lines include `line` (following someone).
  follows: async ({ tab, line, timeout = 30000 }) => {
    try {
      await page.waitForFunction(([fn, want]) => {
        const active = new Function('return ' + fn)()().find((g) => g.active)
        return !!active && (active.tab ?? '').includes(want.tab) && active.numbers.includes(want.line)
      }, [editorGroups.toString(), { tab, line }], { timeout, polling: 50 })
    } catch (err) {
      const active = (await inPage(editorGroups)).find((g) => g.active)
      throw new Error(`the active editor never showed ${tab} line ${line}: tab ${active?.tab}, lines ${active?.numbers[0]}-${active?.numbers.at(-1)}`)
    }
    return { groups: await inPage(editorGroups) }
  },
  ghost: async ({ timeout = 30000 }) => {
    try {
      await page.waitForFunction((fn) => new Function('return ' + fn)()() !== null, ghostText.toString(), { timeout, polling: 50 })
    } catch {
      throw new Error('no inline suggestion (ghost text) was shown in the active editor')
    }
    return { text: await inPage(ghostText) }
  },
  // A status bar entry whose text matches the regular expression `pattern`.
  statusMatch: async ({ pattern, timeout = 30000 }) => {
    try {
      await page.waitForFunction((p) => Array.from(document.querySelectorAll('.part.statusbar .statusbar-item'))
        .some((i) => new RegExp(p).test(i.innerText)), pattern, { timeout, polling: 50 })
    } catch {
      const all = await page.locator('.part.statusbar .statusbar-item').allInnerTexts()
      throw new Error(`no status bar entry matches /${pattern}/ (entries: ${JSON.stringify(all.filter(Boolean))})`)
    }
    const all = await page.locator('.part.statusbar .statusbar-item').allInnerTexts()
    return { text: all.find((t) => new RegExp(pattern).test(t)) }
  },
  // Record, at every change of the page, the notifications and every editor group's tab and
  // lines, so that something shown only for a moment (a progress bar, streamed text) is seen.
  record: async () => {
    await page.evaluate(([groupsSrc, toastsSrc]) => {
      const groups = new Function('return ' + groupsSrc)()
      const toasts = new Function('return ' + toastsSrc)()
      window.__huddleLog = []
      let last = ''
      const snap = () => {
        const entry = { toasts: toasts(), groups: groups().map((g) => ({ tab: g.tab, lines: g.lines })) }
        const key = JSON.stringify(entry)
        if (key !== last) { last = key; window.__huddleLog.push(entry) }
      }
      window.__huddleSnap = snap
      window.__huddleObserver?.disconnect()
      // In the observer's own callback (a microtask after the changes), not on a timer: a
      // hidden page's timers run late and would miss a state shown only for a moment.
      window.__huddleObserver = new MutationObserver(snap)
      window.__huddleObserver.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['class'] })
      snap()
    }, [editorGroups.toString(), toasts.toString()])
    return {}
  },
  // The log so far, ending with the page as it is now.
  recorded: async () => ({ log: await page.evaluate(() => { window.__huddleSnap?.(); return window.__huddleLog ?? [] }) }),
  // Wait until no notification toast contains `text` (a command's progress has ended).
  toastGone: async ({ text, timeout = 30000 }) => {
    try {
      await page.waitForFunction((t) => !Array.from(document.querySelectorAll('.notifications-toasts .notification-toast'))
        .some((el) => el.innerText.includes(t)), text, { timeout, polling: 100 })
    } catch {
      throw new Error(`a notification with ${JSON.stringify(text)} is still shown`)
    }
    return {}
  },
  screenshot: async ({ path }) => { await page.screenshot({ path, type: 'png' }); return {} },
  errors: async () => ({ errors: consoleErrors }),
  quit: async () => { await browser.close(); setTimeout(() => process.exit(0), 10); return {} },
  // The real-editor fuzzer (tests/editor_fuzz.py): one edit as a user makes it, in one op: press
  // `keys` (moves, a cut), type `pieces` where they left the cursor, and read the clipboard (what
  // a Ctrl+X put there, or a Ctrl+A Ctrl+C copied; emptied first: a cut of nothing reads back
  // as ''). Keys and typing in two ops, a teammate's replacement that VS Code applied between
  // them moved the cursor (into a token it rewrote, even), and the typing went elsewhere than
  // the keys had put it (seed 2023). Each piece pasted, "\n" as the Enter key: VS Code reports
  // a paste as one change, and typed text (keyboard.insertText too) a character at a time, so a
  // teammate who inserted at the same place meanwhile, not having seen the first characters,
  // split the token as two people typing at one place do (seed 1988323280): a race of the
  // users, not the bridge's doing, which the fuzzer's checks could not tell apart.
  fuzzEdit: async ({ keys, pieces }) => {
    await page.evaluate(() => navigator.clipboard.writeText(''))
    for (const k of keys) await page.keyboard.press(k)
    // VS Code fills the clipboard in the cut event and deletes the selection in a timer of 0 ms
    // it starts there (TextAreaInput's _asyncTriggerCut); typed before that timer ran, the text
    // replaced the selection and the cut then took it (seed 3004). A timer of 0 ms started now
    // runs after it.
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 0)))
    const text = await page.evaluate(() => navigator.clipboard.readText())
    for (const p of pieces) {
      if (p === '\n') {
        await page.keyboard.press('Enter')
        continue
      }
      await page.evaluate((piece) => navigator.clipboard.writeText(piece), p)
      await page.keyboard.press('Control+V')
    }
    return { text }
  }
}

let queue = Promise.resolve()
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line)
  queue = queue.then(async () => {
    try {
      out({ id: msg.id, ok: true, ...(await ops[msg.op](msg)) })
    } catch (err) {
      out({ id: msg.id, ok: false, error: String(err && err.message ? err.message : err) })
    }
  })
})
out({ event: 'ready' })
