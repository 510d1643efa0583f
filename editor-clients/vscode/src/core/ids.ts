/**
 * The ids package.json contributes. Commands live under `huddle.ui.` because
 * vscode-languageclient registers every command the server offers (`huddle.status`,
 * `huddle.summarizeFile`, ...) as a VS Code command of that name: ours must not collide.
 */
export const UI = {
  join: 'huddle.ui.join',
  share: 'huddle.ui.share',
  leave: 'huddle.ui.leave',
  follow: 'huddle.ui.follow',
  unfollow: 'huddle.ui.unfollow',
  summarizeFile: 'huddle.ui.summarizeFile',
  summarizeSelection: 'huddle.ui.summarizeSelection',
  catchUp: 'huddle.ui.catchUp',
  summarizeSession: 'huddle.ui.summarizeSession',
  undoMine: 'huddle.ui.undoMine',
  showStatus: 'huddle.ui.showStatus',
  reveal: 'huddle.ui.reveal',
} as const;

export const TEAMMATES_VIEW = 'huddle.teammates';
/** Context key: true while following a teammate. */
export const FOLLOWING_CONTEXT = 'huddle.following';
