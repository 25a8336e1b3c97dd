"""simyard: turn a long-running, file-based scientific model into a multi-user web service."""

__version__ = "0.1.0"
