"""simyard: turn a long-running, file-based scientific model into a multi-user web service."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``simyard.Client``, ``simyard.Run``, ``simyard.Sweep``, imported when first used (the
    command line starts without them)."""
    if name == "Client":
        from simyard.client import Client

        return Client
    if name in ("Run", "Sweep"):
        from simyard import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'simyard' has no attribute {name!r}")
