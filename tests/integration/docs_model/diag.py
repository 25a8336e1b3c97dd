# POPCARP diagnostics: collect whatever the failed step left behind
import os
import shutil

if not os.path.isdir("diagnostics"):
    os.mkdir("diagnostics")
for name in ("results/popsim.log", "prep/ponds.dat", "params.json"):
    if os.path.exists(name):
        shutil.copy(name, "diagnostics/" + os.path.basename(name))
print("diagnostics collected")
