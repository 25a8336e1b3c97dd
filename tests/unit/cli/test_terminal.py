"""Model text on a terminal: control sequences gone, brackets never read as markup."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from simyard.cli.terminal import model_text, safe_chunks, terminal_safe


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b]52;c;ZWNobyBwd25lZA==\x07b", "ab"),  # clipboard write, BEL-terminated
        ("a\x1b]52;c;ZWNobyBwd25lZA==\x1b\\b", "ab"),  # clipboard write, ST-terminated
        ("a\x9d52;c;ZWNobw==\x9cb", "ab"),  # the same in 8-bit C1 form
        ("a\x1b]0;you have been pwned\x07b", "ab"),  # window title
        ("a\x1b[2J\x1b[Hb", "ab"),  # clear the screen, cursor home
        ("a\x1b[31;1mred\x1b[0mb", "aredb"),  # colours
        ("a\x9b2Jb", "ab"),  # 8-bit CSI
        ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS (sixel)
        ("a\x1b_payload\x1b\\b", "ab"),  # APC
        ("a\x1b7\x1bcb", "ab"),  # save cursor, full reset
        ("a\x1bb", "a"),  # an escape eats the one character it would start a sequence with
        ("a\x1b", "a"),  # lone ESC at the end
        ("a\x1b]52;c;unterminated", "a"),  # an OSC cut off: dropped to the end
        ("a\x07\x08\x00\x7fb", "ab"),  # BEL, backspace, NUL, DEL
        ("a\x85\x8d\x80b", "ab"),  # C1 controls (NEL, RI, PAD)
        ("a\u202eevil\u202cb", "aevilb"),  # bidi override
        ("line 1\nline 2\tcol\n", "line 1\nline 2\tcol\n"),  # newline and tab kept
        ("safe\rrm -rf ~\r\n", "safe\nrm -rf ~\n"),  # a return cannot hide what it overwrites
        ("ERROR 1 [file topol.top, line 8]:", "ERROR 1 [file topol.top, line 8]:"),
        ("ünïcødé ✓ 雪", "ünïcødé ✓ 雪"),
    ],
)
def test_terminal_safe_strips_control_sequences(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


def printed(*objects: object) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=200)
    console.print(*objects)
    return out.getvalue()


def test_model_text_is_printed_exactly_not_as_markup() -> None:
    text = "ERROR 1 [file topol.top, line 8]: [red]x[/red] [bold] :thumbs_up: [/]"
    assert printed(model_text(text)) == text + "\n"


def test_model_text_reaches_a_terminal_without_escapes() -> None:
    shown = printed(model_text("total = 40\x1b]52;c;aGk=\x07\x1b[2J"))
    assert shown == "total = 40\n"


def test_a_character_split_between_log_chunks_is_decoded_whole() -> None:
    data = "snow ❄ \x1b[2Jdone\n".encode()
    chunks = [data[:6], data[6:8], data[8:11], data[11:]]
    assert "".join(safe_chunks(chunks)) == "snow ❄ done\n"


def test_a_sequence_split_anywhere_between_two_chunks_is_removed_whole() -> None:
    data = "a\x1b]52;c;aGk=\x07b\x1b[2Jc\x1b]0;t\x1b\\d\x9b2Je ❄\n".encode()
    for cut in range(len(data) + 1):
        assert "".join(safe_chunks([data[:cut], data[cut:]])) == "abcde ❄\n", cut
