"""Huddle: real-time collaborative coding for any LSP editor, with streamed AI."""

__version__ = "0.1.0"
