#!/bin/sh
# Build env/image.tar, the runtime of this model: a Debian root holding only libgfortran5
# (and the libraries it needs) plus the compiled program at /opt/fortran-rod/bin/rod.
#
# Needs mmdebstrap, umoci, skopeo and gfortran (Debian: apt-get install mmdebstrap umoci
# skopeo gfortran); no daemon, no root, no registry. The Debian packages come from this
# machine's apt sources (or MIRROR, e.g. MIRROR=http://deb.debian.org/debian).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
suite=${SUITE:-bookworm}
mirror=${MIRROR:-/etc/apt/sources.list.d/debian.sources}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The Debian root: only the packages' files (--variant=extract), no device nodes.
mmdebstrap --quiet --variant=extract --include=libgfortran5 --skip=output/dev \
  --format=tar "$suite" "$work/rootfs.tar" "$mirror"

# 2. The model: compiled here, added as a second layer.
mkdir -p "$work/model/opt/fortran-rod/bin"
gfortran -O2 -o "$work/model/opt/fortran-rod/bin/rod" "$here/rod.f90"
tar -C "$work/model" --owner=0 --group=0 --numeric-owner -cf "$work/model.tar" opt

# 3. An OCI image of the two layers, its PATH naming the program's folder.
umoci init --layout "$work/layout"
umoci new --image "$work/layout:rod"
umoci raw add-layer --image "$work/layout:rod" "$work/rootfs.tar"
umoci raw add-layer --image "$work/layout:rod" "$work/model.tar"
umoci config --image "$work/layout:rod" \
  --config.env=PATH=/opt/fortran-rod/bin:/usr/bin:/bin --config.workingdir=/opt/fortran-rod
mkdir -p "$here/env"
rm -f "$here/env/image.tar"
skopeo --insecure-policy copy --quiet "oci:$work/layout:rod" "oci-archive:$here/env/image.tar"
echo "built $here/env/image.tar"
