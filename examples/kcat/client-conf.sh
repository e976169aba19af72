# Sourced by the kcat examples, with $suffix set (jobs.infer or jobs.work) and $topic the
# single-tenant default. MAAS_CLIENT_CONF: a tenant's client settings (`maas tenant create T
# --client-conf FILE`; the local stack's: .local/state/credentials/demo.conf): its Kafka
# login (a kcat -F file, removed on exit), its topic, its Redis user (the password through
# REDISCLI_AUTH, not argv) and key prefix. Sets keys, kcat_conf, rc_login, kconf.
keys="maas:" kcat_conf=() rc_login=() kconf=""
if [[ -n "${MAAS_CLIENT_CONF:-}" ]]; then
  get() { sed -n "s/^$1=//p" "$MAAS_CLIENT_CONF"; }
  # (an operator's settings, e.g. the local stack's maas.conf, name no topics or prefix)
  if [[ -n "$(get kafka.topics)" ]]; then topic="$(get kafka.topics | tr , '\n' | grep -F ".$suffix")"; fi
  if [[ -n "$(get redis.prefix)" ]]; then keys="$(get redis.prefix)"; fi
  kconf="$(umask 077 && mktemp)"
  grep '^kafka\.' "$MAAS_CLIENT_CONF" | grep -v '^kafka\.topics=' | sed 's/^kafka\.//' > "$kconf"
  kcat_conf=(-F "$kconf")
  if [[ -n "$(get redis.user)" ]]; then
    REDISCLI_AUTH="$(get redis.password)" && export REDISCLI_AUTH
    rc_login=(--user "$(get redis.user)")
  fi
fi
# redis-cli's target for a Redis URL: -u URL for one Redis; for a Redis Cluster
# (redis+cluster://host:port,...) -c (follow MOVED/ASK) -h HOST -p PORT of its first node.
rc_target() {
  if [[ "$1" == redis+cluster://* ]]; then
    local first="${1#redis+cluster://}"
    first="${first%%,*}" && first="${first##*@}"
    echo "-c -h ${first%:*} -p ${first##*:}"
  else
    echo "-u $1"
  fi
}
