"""Small file helpers shared by the lake-heat scripts (the model's own I/O, no simyard code).

The model was written long before simyard: it reads its settings from
INPUT_PARAMETERS.txt, a plain ``name = value`` file, and passes data between its
steps as whitespace-separated ``.dat`` tables.
"""

import sys

PARAMETER_FILE = "INPUT_PARAMETERS.txt"


def fail(message, *details, code=2):
    """Print an ERROR line (and indented detail lines) the way the model always has; stop."""
    print("ERROR: " + message, flush=True)
    for line in details:
        print("  " + line, flush=True)
    sys.exit(code)


def read_parameters(path=PARAMETER_FILE):
    """``name = value`` lines -> dict of strings; ``#`` starts a comment."""
    params = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        fail(f"cannot read the parameter file {path}: {exc.strerror}")
    for number, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            fail(f"{path}, line {number}: expected 'name = value', got {line!r}")
        name, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        params[name.lower()] = value
    return params


def get_number(params, name, default=None):
    """A parameter as a float; stops with an ERROR when it is missing or not a number."""
    if name not in params:
        if default is None:
            fail(f"{PARAMETER_FILE}: '{name}' is missing")
        return float(default)
    try:
        return float(params[name])
    except ValueError:
        fail(f"{PARAMETER_FILE}: '{name}' must be a number, got {params[name]!r}")


def write_table(path, header, rows, fmt):
    """Write a ``.dat`` table: a ``#`` header line, then one formatted row per line."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("# " + " ".join(header) + "\n")
        for row in rows:
            out.write(fmt % tuple(row) + "\n")


def read_table(path):
    """Rows of a ``.dat`` table as lists of strings (header and blank lines skipped)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                rows.append(line.split())
    return rows
