class CollabError(Exception):
    """Base of every error raised by ``huddle.collab``."""
