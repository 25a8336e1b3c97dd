"""Text a model wrote (logs, error quotes, metric values, file names) made safe for a terminal.

A model's output is read by other people, an admin included: an escape sequence in it
could write their clipboard (OSC 52), retitle their window, clear their screen, or hide
text. Every CLI path that prints model text passes it through :func:`terminal_safe`, and
prints it as a :class:`rich.text.Text` (:func:`model_text`), never as Rich markup.
Downloads (``runs outputs -o``, log files) keep the raw bytes.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator

from rich.text import Text

_CONTROLS = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?             # CSI: ESC [ or 8-bit CSI ... final byte
    | (?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])         # OSC, DCS, SOS, PM, APC (7- or 8-bit) ...
      [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)?          # ... up to BEL or ST (or the text's end)
    | \x1b [ -/]* [0-~]?                              # any other escape sequence, a lone ESC
    | [\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]           # other C0 controls, DEL, C1 controls
    | [\u202a-\u202e\u2066-\u2069]                    # bidi overrides: they reorder what is shown
    """,
    re.VERBOSE,
)
_RETURNS = re.compile(r"\r\n?")
_INTRODUCERS = "\x1b\x90\x98\x9b\x9d\x9e\x9f"
_COMPLETE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b(?![\[\]PX^_])[ -/]*[0-~]"
)
HOLD_LIMIT = 65536  # a sequence still open after this many characters is cut


def terminal_safe(text: str) -> str:
    """``text`` without control sequences or control characters; newline and tab kept.

    A carriage return becomes a newline (``\\r\\n`` one newline): a line that overwrites
    another with ``\\r`` would hide what it covers, so both are shown.
    """
    return _CONTROLS.sub("", _RETURNS.sub("\n", text))


def model_text(value: object, style: str = "") -> Text:
    """``value`` as printable Rich text: control sequences gone, brackets printed as they are."""
    return Text(terminal_safe(str(value)), style=style)


def refused_line(problem: object) -> Text:
    """``✗ problem`` (a problem may quote a value someone typed or a model wrote)."""
    return Text.assemble(("✗", "red"), " ", model_text(problem))


def warning_line(*parts: object) -> Text:
    """``! part: part: ...``, the parts printed as text."""
    return Text.assemble(("!", "yellow"), " ", model_text(": ".join(map(str, parts))))


def safe_chunks(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode a byte stream (a log) for the terminal, chunk by chunk; a character or an
    escape sequence split between two chunks is decoded (and removed) whole."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    for chunk in chunks:
        text = pending + decoder.decode(chunk)
        start = max(text.rfind(c) for c in _INTRODUCERS)
        if start >= 0 and len(text) - start < HOLD_LIMIT and not _COMPLETE.match(text, start):
            text, pending = text[:start], text[start:]  # the sequence may go on in the next chunk
        else:
            pending = ""
        if text:
            yield terminal_safe(text)
    if rest := pending + decoder.decode(b"", final=True):
        yield terminal_safe(rest)
