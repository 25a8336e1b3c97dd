"""Run by simyard after a failed task, in that task's working directory: bundle what it left.

Usage: python3 collect_diagnostics.py

Writes diagnostics/state.tar.gz  the namelist, the grid, the model's own log and the
                                 newest state files (at most DIAG_KEEP_STATES of them)
       diagnostics/README.txt    what is in the bundle, and the last lines of the
                                 model's log
Works whatever step failed: files that were never written are simply left out.
"""

import glob
import os
import tarfile

FIXED = ["sediment.nml", "grid/grid.dat", "output/simulation.log", "output/transport.csv"]


def main():
    keep = int(os.environ.get("DIAG_KEEP_STATES", "3"))
    states = sorted(glob.glob("state/*.dat"), key=os.path.getmtime)[-keep:]
    files = [path for path in FIXED if os.path.isfile(path)] + states
    os.makedirs("diagnostics", exist_ok=True)
    with tarfile.open("diagnostics/state.tar.gz", "w:gz") as bundle:
        for path in files:
            bundle.add(path)
    lines = []
    if os.path.isfile("output/simulation.log"):
        with open("output/simulation.log", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()[-15:]
    with open("diagnostics/README.txt", "w", encoding="utf-8") as out:
        out.write("Diagnostics collected in the working directory of the failed task\n\n")
        out.write("state.tar.gz holds:\n")
        out.writelines(f"  {path} ({os.path.getsize(path)} bytes)\n" for path in files)
        if lines:
            out.write("\nLast lines of output/simulation.log:\n")
            out.writelines(f"  {line}\n" for line in lines)
    print(f"collected {len(files)} file(s) into diagnostics/state.tar.gz")


if __name__ == "__main__":
    main()
