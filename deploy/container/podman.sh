# Sourced by the container scripts: podman as this project runs it. runc with cgroupfs, and
# open files and processes capped below the caller's limits: crun refuses hosts with cgroup v1
# controllers beside v2 ("hybrid"), and sandboxes that forbid raising a limit refuse podman's
# defaults (seen on the test machines); both work on other hosts too.
MAAS_PODMAN_GLOBAL=(--runtime runc --cgroup-manager cgroupfs)
maas_podman() { podman "${MAAS_PODMAN_GLOBAL[@]}" "$@"; }
MAAS_PODMAN_LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
# podman-compose (deploy/compose) with the same global options and limits
maas_podman_compose() {
  podman-compose --podman-args="${MAAS_PODMAN_GLOBAL[*]}" \
    --podman-run-args="${MAAS_PODMAN_LIMITS[*]}" "$@"
}
# For the tests: makes the base image (base.sh) and runs a container of it. Returns 0, 1 when
# the base cannot be made, or 77 (printing why) when this kernel or sandbox refuses to run a
# container; logs into base.log and run.log in the current folder.
maas_podman_ready() {
  "$(dirname "${BASH_SOURCE[0]}")/base.sh" > base.log 2>&1 || { echo "the base image: $(tail -5 base.log)"; return 1; }
  maas_podman run --rm "${MAAS_PODMAN_LIMITS[@]}" localhost/maas-base:bookworm true > run.log 2>&1 && return 0
  echo "SKIP: this kernel or sandbox refuses to run a container: $(tail -3 run.log)"
  return 77
}
