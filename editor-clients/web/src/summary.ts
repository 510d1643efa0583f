// "Summarize file" and "Catch me up": the hub's `summarize` request (kinds `file` and
// `catch_up`, as the editors' huddle.summarizeFile and huddle.catchUp send it), its text shown in
// a panel as it streams (`summary/partial`), its progress (`summary/progress`) beside it, and a
// Cancel button that stops it on the hub. The hub keeps private files from the model, limits how
// many summaries a member runs and audits them, whoever asks.

import { type Call, HubMethod, HubNotification, type Rpc, RpcError, isObject } from './rpc'

export type SummaryKind = 'file' | 'catch_up'

const TITLES: Record<SummaryKind, string> = { file: 'Summary of ', catch_up: 'Catching up' }

export interface SummaryElements {
  panel: HTMLElement
  title: HTMLElement
  status: HTMLElement
  text: HTMLElement
  cancel: HTMLButtonElement
  close: HTMLButtonElement
}

export class SummaryPanel {
  private call: Call<unknown> | null = null

  constructor (private readonly rpc: Rpc, private readonly el: SummaryElements) {
    el.cancel.addEventListener('click', () => this.call?.cancel())
    el.close.addEventListener('click', () => {
      this.call?.cancel()
      el.panel.hidden = true
    })
  }

  /** Ask for a summary; a running one is cancelled first (the hub runs one per member). */
  run (kind: SummaryKind, path: string | null): void {
    const running = this.call
    this.call = null
    running?.cancel()
    const { panel, title, status, text, cancel } = this.el
    panel.hidden = false
    title.textContent = kind === 'file' ? TITLES.file + (path ?? '') : TITLES.catch_up
    text.textContent = ''
    let partials = 0
    const show = (state: string, line: string): void => {
      panel.dataset.state = state
      status.textContent = line
      cancel.hidden = state !== 'running'
    }
    panel.dataset.partials = '0'
    show('running', 'asking the model…')
    const params: Record<string, unknown> = { kind }
    if (kind === 'file') params.path = path
    const call = this.rpc.call<unknown>(HubMethod.summarize, params, (method, params) => {
      if (method === HubNotification.summaryPartial && typeof params.text === 'string') {
        partials += 1
        panel.dataset.partials = String(partials)
        text.textContent = params.text
      } else if (method === HubNotification.summaryProgress && typeof params.message === 'string') {
        const pct = typeof params.percentage === 'number' ? ` (${params.percentage}%)` : ''
        status.textContent = params.message + pct
      }
    })
    this.call = call
    // A call another run superseded shows nothing: the panel is the new one's.
    call.result.then((result) => {
      if (this.call !== call) return
      this.call = null
      // The markdown an editor shows (a heading, the files, the summary): read as plain text.
      text.textContent = isObject(result) && typeof result.markdown === 'string' ? result.markdown : ''
      const truncated = isObject(result) && typeof result.truncated === 'string' ? ` (${result.truncated})` : ''
      show('done', `done${truncated}`)
    }, (error: unknown) => {
      if (this.call !== call) return
      this.call = null
      const code = error instanceof RpcError ? error.code : 'failed'
      show(code === 'cancelled' ? 'cancelled' : 'failed', error instanceof Error ? error.message : String(error))
    })
  }
}
