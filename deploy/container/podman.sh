# Sourced by the container scripts: podman as this project runs it. runc with cgroupfs, and
# open files and processes capped below the caller's limits: crun refuses hosts with cgroup v1
# controllers beside v2 ("hybrid"), and sandboxes that forbid raising a limit refuse podman's
# defaults (seen on the test machines); both work on other hosts too.
maas_podman() { podman --runtime runc --cgroup-manager cgroupfs "$@"; }
MAAS_PODMAN_LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
