#!/usr/bin/env bash
# The base image for deploy/container/Containerfile, from Debian's packages (no registry):
# mmdebstrap makes a minimal Debian bookworm, podman imports it as localhost/maas-base:bookworm.
# Made once (kept in podman's storage); --force makes it again.
set -euo pipefail
source "$(dirname "$0")/podman.sh"
image="${MAAS_BASE_IMAGE:-localhost/maas-base:bookworm}"
if [[ "${1:-}" != --force ]] && maas_podman image exists "$image"; then
  echo "base image $image present"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mirror="${MAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
echo "making $image: mmdebstrap --variant=minbase bookworm from $mirror"
mmdebstrap --quiet --variant=minbase --format=tar bookworm "$tmp/base.tar" "$mirror"
maas_podman import --quiet "$tmp/base.tar" "$image" > /dev/null
echo "base image $image made ($(du -h "$tmp/base.tar" | cut -f1) tarball)"
