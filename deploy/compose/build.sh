#!/usr/bin/env bash
# Builds the images deploy/compose/compose.yaml runs: localhost/maas:latest (deploy/container)
# and localhost/maas-services:latest (services.Containerfile: Redis, Kafka and the local stack's
# scripts). The Kafka jars come from Maven Central through deploy/local/kafka.sh fetch (cached).
# usage: deploy/compose/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$root/deploy/container/podman.sh"
source "$root/deploy/local/common.sh"
"$root/deploy/container/build.sh" localhost/maas:latest
"$root/deploy/local/kafka.sh" fetch
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/deploy"
cp -r "$root/deploy/local" "$root/deploy/compose" "$ctx/deploy/"
cp -r "$MAAS_CACHE_DIR/kafka-$MAAS_KAFKA_VERSION" "$ctx/kafka"
maas_podman build --quiet --format docker --network host "${MAAS_PODMAN_LIMITS[@]}" \
  --build-arg BASE="${MAAS_BASE_IMAGE:-localhost/maas-base:bookworm}" \
  --build-arg MAAS_IMAGE=localhost/maas:latest --build-arg KAFKA_VERSION="$MAAS_KAFKA_VERSION" \
  -f "$here/services.Containerfile" -t localhost/maas-services:latest "$ctx" > /dev/null
echo "image localhost/maas-services:latest: $(maas_podman image inspect --format '{{.Size}}' \
  localhost/maas-services:latest | awk '{ printf "%.0f MB", $1 / 1e6 }')"
