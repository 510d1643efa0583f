/**
 * Ghost text while an AI completion streams (`huddle/inlineCompletionPartial`), before VS Code's
 * own inline completion shows the finished one.
 */
import type { InlinePartialParams, Position } from './protocol';

export interface Caret {
  position: Position;
  /** The text of the caret's line. */
  lineText: string;
}

/**
 * What is left of the partial completion to show at the caret: the caret must be on the line
 * it was asked for, at or after that point, with the text typed since then being the start of
 * the completion. `undefined`: show nothing.
 */
export function remainingGhost(partial: InlinePartialParams, caret: Caret): string | undefined {
  const at = partial.position;
  if (caret.position.line !== at.line || caret.position.character < at.character) return undefined;
  if (caret.lineText.length < caret.position.character) return undefined;
  const typed = caret.lineText.slice(at.character, caret.position.character);
  if (!partial.text.startsWith(typed)) return undefined;
  const rest = partial.text.slice(typed.length);
  return rest === '' ? undefined : rest;
}

/** A decoration shows one line: the first line of the rest, and a mark when more follows. */
export function ghostLabel(rest: string, maxChars = 120): string {
  const lines = rest.replace(/\r\n/g, '\n').split('\n');
  let label = lines[0];
  let more = lines.length > 1;
  if (label.trim() === '' && lines.length > 1) {
    label = `⏎ ${lines[1].trimStart()}`;
    more = lines.length > 2;
  }
  if (label.length > maxChars) {
    label = label.slice(0, maxChars);
    more = true;
  }
  return more ? `${label} …` : label;
}
