#!/usr/bin/env bash
# A local Apache Kafka broker for maas: fetch | start | stop | status | wait.
#
# fetch: downloads the broker jars (org.apache.kafka:kafka_2.13:$MAAS_KAFKA_VERSION, 3.9.x)
#        from Maven Central with mvn into $MAAS_CACHE_DIR/kafka-<version>/libs, once; a
#        sha256 manifest verifies the cache on every start.
# start: a single-node KRaft broker (combined broker + controller) on
#        $MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT (127.0.0.1 by default; controller $MAAS_KAFKA_CONTROLLER_PORT), data and log
#        under $MAAS_STATE_DIR/kafka, run with the machine's Java 17; waits until the
#        broker answers a metadata request (build/bin/maas-kafka-admin), else prints the
#        log tail and fails.
# stop:  by pid (never by name); safe to call twice.
set -euo pipefail
source "$(dirname "$0")/common.sh"
home="$MAAS_CACHE_DIR/kafka-$MAAS_KAFKA_VERSION"
libs="$home/libs"
dir="$MAAS_STATE_DIR/kafka"
pidfile="$dir/kafka.pid"
logfile="$dir/kafka.log"
admin="${MAAS_KAFKA_ADMIN:-$MAAS_ROOT/build/bin/maas-kafka-admin}"
brokers="$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT"

verify_cache() {
  [[ -f "$home/manifest.sha256" && -d "$libs" ]] || return 1
  (cd "$libs" && sha256sum --quiet -c "$home/manifest.sha256") >/dev/null 2>&1 || return 1
  [[ -f "$libs/kafka_2.13-$MAAS_KAFKA_VERSION.jar" ]]
}

fetch() {
  if verify_cache; then
    log "kafka $MAAS_KAFKA_VERSION jars cached in $libs ($(du -sh "$libs" | cut -f1))"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn is not installed (deploy/install-deps.sh)"
  log "fetching kafka_2.13:$MAAS_KAFKA_VERSION from Maven Central into $libs"
  rm -rf "$home"
  mkdir -p "$home"
  # The pom only lists what to download. slf4j-reload4j is the log binding that
  # kafka_2.13 3.x leaves to the distribution.
  cat > "$home/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.maas</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>$MAAS_KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
  local t0=$SECONDS
  if ! (cd "$home" && mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory=libs > mvn.log 2>&1); then
    tail_log "$home/mvn.log"
    die "mvn could not fetch the kafka jars"
  fi
  (cd "$libs" && sha256sum ./*.jar > "$home/manifest.sha256")
  verify_cache || die "the fetched jars do not verify"
  log "fetched $(ls "$libs" | wc -l) jars, $(du -sh "$libs" | cut -f1), in $((SECONDS - t0)) s"
}

# G1 aiming at 20 ms pauses, as Kafka's own kafka-run-class.sh sets it: with G1's default of
# 200 ms, young collections of the broker took ~45 ms each (up to 190) on a 2-core machine
# under load, and every job in flight waited; with it, 15-24 ms (jstat). That script's other
# flags (InitiatingHeapOccupancyPercent=35, MaxInlineLevel=15, ...) were not measured to help
# here and are left out. MAAS_KAFKA_JVM_OPTS replaces these flags. Also measured, and not
# kept: ZGC, and G1 with a fixed 512 MB young generation (1 GB heap; 10x fewer, ~2x longer
# pauses) - at 8 k jobs/s on a calm machine both gave the same p99 (10-18 ms) as this.
read -ra jvm_opts <<< "${MAAS_KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true}"

java_cmd() {
  java -Xms"$MAAS_KAFKA_HEAP" -Xmx"$MAAS_KAFKA_HEAP" "${jvm_opts[@]}" \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$libs/*" "$@"
}

# The listeners: PLAINTEXT, or with MAAS_KAFKA_AUTH=scram SASL SCRAM-SHA-512 for clients and
# the broker itself, SASL PLAIN on the controller listener (left PLAINTEXT, anyone reaching it
# would be a super user: shared/notes/tenancy.md), the StandardAuthorizer with no access
# unless an ACL grants it. Super users: admin (the scripts' tools), controller, and maas (the
# coordinator and the operator's CLI, which make tenants' topics and ACLs). worker: ACLs on
# maas.* topics and groups. Tenants' principals get prefixed ACLs from `maas tenant create`
# (their topics maas.t.T.*).
listener_config() {
  if [[ "$MAAS_KAFKA_AUTH" == scram ]]; then
    local adm ctl
    adm="$(secret_file kafka-admin.pass)"
    ctl="$(secret_file kafka-controller.pass)"
    cat <<CFG
listeners=SASL_PLAINTEXT://$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT,CONTROLLER://$MAAS_KAFKA_HOST:$MAAS_KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_PLAINTEXT://$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT
inter.broker.listener.name=SASL_PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$adm";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$ctl" user_controller="$ctl";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller;User:maas
allow.everyone.if.no.acl.found=false
CFG
  else
    cat <<CFG
listeners=PLAINTEXT://$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT,CONTROLLER://$MAAS_KAFKA_HOST:$MAAS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
CFG
  fi
}

# The maas programs' part of maas.conf: the service principal's SCRAM login, or nothing.
write_client_part() {
  if [[ "$MAAS_KAFKA_AUTH" == scram ]]; then
    local role
    for role in maas worker; do
      (umask 077 && cat > "$MAAS_CRED_DIR/$role-kafka.part" <<CFG
kafka.security.protocol=SASL_PLAINTEXT
kafka.sasl.mechanisms=SCRAM-SHA-512
kafka.sasl.username=$role
kafka.sasl.password=$(secret_file "kafka-$role.pass")
CFG
      )
    done
    (umask 077 && cat > "$dir/admin.properties" <<CFG
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secret_file kafka-admin.pass)";
CFG
    )
  else
    rm -f "$MAAS_CRED_DIR/maas-kafka.part" "$MAAS_CRED_DIR/worker-kafka.part"
  fi
  maas_conf_refresh
}

write_config() {
  mkdir -p "$dir/data"
  [[ "$MAAS_KAFKA_AUTH" == none || "$MAAS_KAFKA_AUTH" == scram ]] ||
    die "MAAS_KAFKA_AUTH=$MAAS_KAFKA_AUTH: none or scram"
  if [[ -f "$dir/data/meta.properties" && "$(cat "$dir/auth" 2>/dev/null || echo none)" != "$MAAS_KAFKA_AUTH" ]]; then
    die "the broker's data in $dir was made with MAAS_KAFKA_AUTH=$(cat "$dir/auth" 2>/dev/null || echo none); set that, or remove $dir to start over"
  fi
  (umask 077 && cat > "$dir/server.properties" <<CFG
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$MAAS_KAFKA_HOST:$MAAS_KAFKA_CONTROLLER_PORT
$(listener_config)
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
CFG
  )
  write_client_part
  cat > "$dir/log4j.properties" <<CFG
log4j.rootLogger=INFO, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.Target=System.err
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.state.change.logger=WARN
CFG
}

wait_ready() {
  local secs="${1:-90}"
  [[ -x "$admin" ]] || die "$admin is missing: build first (cmake --build build)"
  local deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    if "$admin" --brokers "$brokers" wait --timeout 2 >/dev/null 2>&1; then return 0; fi
    live_pid "$pidfile" kafka.Kafka >/dev/null || { log "the broker exited"; break; }
    sleep 0.5
  done
  log "kafka did not answer a metadata request on $brokers within ${secs}s"
  tail_log "$logfile" 60
  return 1
}

case "${1:-}" in
  fetch) fetch ;;
  start)
    command -v java >/dev/null || die "java is not installed (deploy/install-deps.sh)"
    fetch
    if pid="$(live_pid "$pidfile" kafka.Kafka)"; then
      log "kafka already running (pid $pid)"
    else
      write_config
      if [[ ! -f "$dir/data/meta.properties" ]]; then
        cluster_id="$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
        scram=()
        if [[ "$MAAS_KAFKA_AUTH" == scram ]]; then # the principals the broker needs from the start
          scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(secret_file kafka-admin.pass)]"
                 --add-scram "SCRAM-SHA-512=[name=maas,password=$(secret_file kafka-maas.pass)]"
                 --add-scram "SCRAM-SHA-512=[name=worker,password=$(secret_file kafka-worker.pass)]")
        fi
        java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
          "${scram[@]}" >> "$logfile" 2>&1 || { tail_log "$logfile"; die "formatting the KRaft storage failed"; }
        echo "$MAAS_KAFKA_AUTH" > "$dir/auth"
      fi
      t0=$SECONDS
      rm -f "$pidfile" # a kill -9 leaves the old one behind; it must not pass for the new one
      nohup bash -c 'echo $$ > "$0"; exec "${@:1}"' "$pidfile" \
        java -Xms"$MAAS_KAFKA_HEAP" -Xmx"$MAAS_KAFKA_HEAP" "${jvm_opts[@]}" \
        -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$libs/*" \
        kafka.Kafka "$dir/server.properties" >> "$logfile" 2>&1 < /dev/null &
      for ((i = 0; i < 50; i++)); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
    fi
    wait_ready "${MAAS_KAFKA_START_TIMEOUT:-120}" || exit 1
    if [[ "$MAAS_KAFKA_AUTH" == scram ]]; then
      # the workers' principal: maas's topics (consume jobs, produce dead letters) and consumer
      # groups, nothing else (no topics or ACLs of its own making); set again at every start
      prefix="${MAAS_TOPIC_PREFIX:-maas.}"
      "$admin" --brokers "$brokers" grant User:worker "$prefix" "$prefix" > /dev/null ||
        die "could not grant the workers' ACLs"
    fi
    log "kafka $MAAS_KAFKA_VERSION ready on $brokers (pid $(cat "$pidfile"); data in $dir)${t0:+, started in $((SECONDS - t0)) s}"
    ;;
  stop) stop_pid "$pidfile" kafka.Kafka kafka ;;
  status)
    if pid="$(live_pid "$pidfile" kafka.Kafka)"; then
      echo "kafka: running, pid $pid, $brokers"
    else
      echo "kafka: not running"; exit 1
    fi ;;
  wait) wait_ready "${2:-90}" ;;
  scram-user)
    # scram-user NAME: sets NAME's SCRAM-SHA-512 password to the line on stdin (maas tenant
    # create calls this through MAAS_KAFKA_SCRAM_CMD); the password goes through a 0600 file
    [[ "$MAAS_KAFKA_AUTH" == scram && -f "$dir/admin.properties" ]] || die "the broker runs without SCRAM (MAAS_KAFKA_AUTH=scram)"
    [[ "${2:-}" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || die "scram-user NAME: a tenant name"
    IFS= read -r pass || die "scram-user: no password on stdin"
    tmp="$(umask 077 && mktemp "$dir/scram.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    printf 'SCRAM-SHA-512=password=%s\n' "$pass" > "$tmp" # (the file form has no brackets)
    java -cp "$libs/*" -Dlog4j.configuration="file:$dir/log4j.properties" kafka.admin.ConfigCommand \
      --bootstrap-server "$brokers" --command-config "$dir/admin.properties" --alter \
      --add-config-file "$tmp" --entity-type users --entity-name "$2" >> "$dir/admin-tools.log" 2>&1 ||
      die "could not set the SCRAM credential of $2"
    ;;
  *) echo "usage: $0 fetch|start|stop|status|wait [seconds]|scram-user NAME" >&2; exit 2 ;;
esac
