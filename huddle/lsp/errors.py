class LspError(Exception):
    """Base of every error raised by ``huddle.lsp``."""


class SettingsError(LspError):
    """Settings that cannot be used; the message names the field."""
