#!/usr/bin/env bash
# Builds the maas image (deploy/container/Containerfile) from this checkout: the base image
# first if missing (base.sh), then the multi-stage build. Prints the image's name and size.
# usage: deploy/container/build.sh [TAG (localhost/maas:latest)]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/podman.sh"
tag="${1:-localhost/maas:latest}"
"$here/base.sh"
maas_podman build --quiet --format docker --network host "${MAAS_PODMAN_LIMITS[@]}" \
  --build-arg BASE="${MAAS_BASE_IMAGE:-localhost/maas-base:bookworm}" \
  -f "$here/Containerfile" -t "$tag" "$here/../.." > /dev/null
echo "image $tag: $(maas_podman image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
