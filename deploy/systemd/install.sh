#!/usr/bin/env bash
# Installs maas on a bare host for systemd: the programs (from a build), the units and, where
# none are there yet, the example settings files. Run as root; then edit /etc/maas/*.conf and
#   systemctl daemon-reload && systemctl enable --now maas-coordinator maas-worker@1 maas-worker@2
# usage: deploy/systemd/install.sh [--build DIR (build)] [--root DIR (/): stage into DIR]
#                                  [--prefix DIR (/usr/local)]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/../../build" root=/ prefix=/usr/local
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --root) root="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--root DIR] [--prefix DIR]" >&2; exit 2 ;;
  esac
done
for p in maas maas-worker maas-coordinator maas-kafka-admin; do
  [[ -x "$build/bin/$p" ]] || { echo "$0: $build/bin/$p is not built (deploy/test.sh or cmake --build)" >&2; exit 1; }
done
bin="$root/${prefix#/}/bin" units="$root/etc/systemd/system" conf="$root/etc/maas"
install -d -m 0755 "$bin" "$units"
install -d -m 0700 "$conf"
for p in maas maas-worker maas-coordinator maas-kafka-admin; do install -m 0755 "$build/bin/$p" "$bin/"; done
for u in maas-worker@.service maas-coordinator.service; do
  sed "s#/usr/local/bin/#/${prefix#/}/bin/#" "$here/$u" > "$units/$u"
  chmod 0644 "$units/$u"
done
# settings files hold secrets: root's alone (systemd hands each to its service); never overwritten
for c in worker coordinator; do
  [[ -e "$conf/$c.conf" ]] || install -m 0600 "$here/$c.conf.example" "$conf/$c.conf"
done
echo "installed into ${root%/}/: $prefix/bin/{maas,maas-worker,maas-coordinator,maas-kafka-admin}," \
     "/etc/systemd/system/{maas-worker@,maas-coordinator}.service, /etc/maas/{worker,coordinator}.conf"
if [[ "$root" == / ]] && [[ -d /run/systemd/system ]]; then systemctl daemon-reload; fi
