"""Sizes are shown in the units they were written in: "50MB" is "50 MB", not "47.7 MiB"."""

from __future__ import annotations

import pytest

from simyard.manifest.units import format_size, parse_size


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("50MB", "50 MB"),
        ("1.5MB", "1.5 MB"),
        ("200KB", "200 KB"),
        ("2GB", "2 GB"),
        ("50MiB", "50.0 MiB"),
        ("1GiB", "1.0 GiB"),
        ("4KiB", "4.0 KiB"),
        (512, "512 B"),
        (123456, "120.6 KiB"),
    ],
)
def test_a_size_is_shown_in_the_units_it_was_written_in(written: str | int, shown: str) -> None:
    assert format_size(parse_size(written)) == shown
