#!/usr/bin/env bash
# A local Apache Kafka broker for maas: fetch | start | stop | status | wait.
#
# fetch: downloads the broker jars (org.apache.kafka:kafka_2.13:$MAAS_KAFKA_VERSION, 3.9.x)
#        from Maven Central with mvn into $MAAS_CACHE_DIR/kafka-<version>/libs, once; a
#        sha256 manifest verifies the cache on every start.
# start: a single-node KRaft broker (combined broker + controller) on
#        127.0.0.1:$MAAS_KAFKA_PORT (controller $MAAS_KAFKA_CONTROLLER_PORT), data and log
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
brokers="127.0.0.1:$MAAS_KAFKA_PORT"

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

write_config() {
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<CFG
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$MAAS_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$MAAS_KAFKA_PORT,CONTROLLER://127.0.0.1:$MAAS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$MAAS_KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
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
        java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
          >> "$logfile" 2>&1 || { tail_log "$logfile"; die "formatting the KRaft storage failed"; }
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
  *) echo "usage: $0 fetch|start|stop|status|wait [seconds]" >&2; exit 2 ;;
esac
