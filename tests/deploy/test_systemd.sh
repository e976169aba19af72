#!/usr/bin/env bash
# deploy/systemd, as an operator installs it: install.sh stages the programs, units and
# settings into a directory; systemd-analyze verifies each unit (syntax, directives, the
# program it starts) and scores its sandboxing (exposure at most 2.0 of 10: "OK"); the
# example settings pass the programs' --check-config; each unit's own command line, its
# credential directory pointed at the staged settings, passes it too.
# usage: test_systemd.sh BUILD_DIR WORKDIR
set -uo pipefail
build="$(realpath "$1")" work="$2"
here="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$here/deploy/systemd/install.sh" --build "$build" --root "$work/root" > install.log 2>&1 \
  && ok || bad "install.sh: $(cat install.log)"
for f in usr/local/bin/maas-worker usr/local/bin/maas-coordinator etc/maas/worker.conf \
         etc/maas/coordinator.conf etc/systemd/system/maas-worker@.service \
         etc/systemd/system/maas-coordinator.service; do
  [[ -e "root/$f" ]] && ok || bad "install.sh did not install /$f"
done
[[ $(stat -c %a root/etc/maas/worker.conf) == 600 ]] && ok || bad "worker.conf is not 0600"
# settings already there are kept
echo "# mine" >> root/etc/maas/worker.conf
"$here/deploy/systemd/install.sh" --build "$build" --root "$work/root" > /dev/null 2>&1
grep -q '^# mine$' root/etc/maas/worker.conf && ok || bad "install.sh overwrote an existing worker.conf"

# the units as installed, their programs at the staged paths (verify checks they exist)
mkdir -p units
for u in maas-worker@.service maas-coordinator.service; do
  sed "s#/usr/local/bin/#$work/root/usr/local/bin/#" "root/etc/systemd/system/$u" > "units/$u"
done
for u in maas-worker@1.service maas-coordinator.service; do
  if systemd-analyze verify "units/$u" > verify.log 2>&1 && ! grep -q . verify.log; then ok
  else bad "systemd-analyze verify $u: $(cat verify.log)"; fi
  systemd-analyze security --offline=true "units/$u" > security.log 2>&1
  level="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' security.log)"
  if [[ -n "$level" ]] && awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then ok
  else bad "$u: exposure '${level:-?}' over 2.0: $(grep -E '✗|Overall' security.log | head -20)"; fi
done

# the example settings, as installed, and each unit's command line as systemd would run it
for p in worker coordinator; do
  prog="root/usr/local/bin/maas-$p"
  if "$prog" --config "root/etc/maas/$p.conf" --check-config > check.log 2>&1 \
     && grep -q 'configuration is valid' check.log; then ok
  else bad "maas-$p --check-config on the example: $(cat check.log)"; fi
  grep -q 'CHANGE-ME' check.log && bad "maas-$p --check-config printed a secret" || ok
  unit="units/maas-coordinator.service"
  [[ $p == worker ]] && unit="units/maas-worker@.service"
  cmd="$(sed -n 's/^ExecStart=//p' "$unit")"
  cmd="${cmd//\$\{CREDENTIALS_DIRECTORY\}/$work/root/etc/maas}"
  # shellcheck disable=SC2086 # word splitting as systemd does for this plain command line
  if MAAS_WORKER_ID=host-1 $cmd --check-config > check.log 2>&1; then ok
  else bad "$unit's ExecStart with --check-config: $(cat check.log)"; fi
done
# a setting librdkafka does not know, and a bad Redis URL, are refused before anything starts
root/usr/local/bin/maas-worker -X kafka.sasl.mechanismz=PLAIN --check-config > check.log 2>&1
[[ $? -eq 2 ]] && grep -q 'sasl.mechanismz' check.log && ok || bad "bad kafka setting: $(cat check.log)"
root/usr/local/bin/maas-coordinator --redis 'rediss://x' --check-config > check.log 2>&1
[[ $? -eq 2 ]] && grep -q "redis URL" check.log && ok || bad "bad redis URL: $(cat check.log)"

echo "test_systemd: $pass passed, $fail failed"
[[ $fail -eq 0 && $pass -gt 0 ]]
