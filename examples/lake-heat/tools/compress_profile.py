"""Post-processing helper the simulation calls through os.system: gzip a file, keep the original.

Usage: python3 tools/compress_profile.py SOURCE TARGET.gz
"""

import gzip
import shutil
import sys


def main():
    if len(sys.argv) != 3:
        print("usage: compress_profile.py SOURCE TARGET.gz", file=sys.stderr)
        return 2
    source, target = sys.argv[1], sys.argv[2]
    with open(source, "rb") as raw, gzip.open(target, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(raw, packed)
    print(f"compress_profile: {source} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
