"""A terminal screen captured with its colours (``tmux capture-pane -e``) as HTML, so a browser
can draw it beside pages in one picture (the web client's README screenshot)."""

from __future__ import annotations

import html
import re

_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_BASIC = [
    "#000000",
    "#cd3131",
    "#0dbc79",
    "#e5e510",
    "#2472c8",
    "#bc3fbc",
    "#11a8cd",
    "#e5e5e5",
    "#666666",
    "#f14c4c",
    "#23d18b",
    "#f5f543",
    "#3b8eea",
    "#d670d6",
    "#29b8db",
    "#ffffff",
]


def _color256(n: int) -> str:
    if n < 16:
        return _BASIC[n]
    if n < 232:
        n -= 16
        levels = [0, 95, 135, 175, 215, 255]
        return f"#{levels[n // 36]:02x}{levels[n // 6 % 6]:02x}{levels[n % 6]:02x}"
    grey = 8 + (n - 232) * 10
    return f"#{grey:02x}{grey:02x}{grey:02x}"


class _Style:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fg: str | None = None
        self.bg: str | None = None
        self.bold = self.italic = self.underline = self.reverse = False

    def apply(self, params: list[int]) -> None:
        i = 0
        while i < len(params):
            p = params[i]
            if p == 0:
                self.reset()
            elif p == 1:
                self.bold = True
            elif p == 3:
                self.italic = True
            elif p == 4:
                self.underline = True
            elif p == 7:
                self.reverse = True
            elif p == 22:
                self.bold = False
            elif p == 23:
                self.italic = False
            elif p == 24:
                self.underline = False
            elif p == 27:
                self.reverse = False
            elif 30 <= p <= 37 or 90 <= p <= 97:
                self.fg = _BASIC[p - 30 if p < 90 else p - 82]
            elif 40 <= p <= 47 or 100 <= p <= 107:
                self.bg = _BASIC[p - 40 if p < 100 else p - 92]
            elif p == 39:
                self.fg = None
            elif p == 49:
                self.bg = None
            elif p in (38, 48) and i + 1 < len(params):
                if params[i + 1] == 2 and i + 4 < len(params):
                    color = "#{:02x}{:02x}{:02x}".format(*params[i + 2 : i + 5])
                    i += 4
                elif params[i + 1] == 5 and i + 2 < len(params):
                    color = _color256(params[i + 2])
                    i += 2
                else:
                    color = None
                if p == 38:
                    self.fg = color
                else:
                    self.bg = color
            i += 1

    def css(self, default_fg: str, default_bg: str) -> str:
        fg, bg = self.fg or default_fg, self.bg or default_bg
        if self.reverse:
            fg, bg = bg, fg
        rules = [f"color:{fg}", f"background:{bg}"]
        if self.bold:
            rules.append("font-weight:bold")
        if self.italic:
            rules.append("font-style:italic")
        if self.underline:
            rules.append("text-decoration:underline")
        return ";".join(rules)


def ansi_to_html(screen: str, fg: str = "#e0e2ea", bg: str = "#14161b") -> str:
    """``screen`` (text with SGR colour escapes) as a ``<pre>`` of styled spans; ``fg`` and
    ``bg`` are the terminal's defaults (these: Neovim's default dark colours)."""
    style = _Style()
    out = [f'<pre class="terminal" style="color:{fg};background:{bg}">']
    for line in screen.rstrip("\n").split("\n"):
        pos = 0
        for match in [*_SGR.finditer(line), None]:
            end = match.start() if match else len(line)
            if end > pos:
                text = html.escape(line[pos:end])
                out.append(f'<span style="{style.css(fg, bg)}">{text}</span>')
            if match:
                style.apply([int(p) for p in re.split("[;:]", match.group(1)) if p] or [0])
                pos = match.end()
        out.append("\n")
    out.append("</pre>")
    return "".join(out)
