#!/usr/bin/env bash
# Real single-node Apache Kafka (KRaft, broker+controller), redis-server and
# Prometheus on loopback, without Docker, for tests and local use.
#
#   scripts/services.sh install   fetch Kafka jars (Maven Central) + redis-server, promtool and
#                                 docker-compose (apt; the last two for the deploy/ tests)
#   scripts/services.sh start [kafka|redis|prometheus]...
#                                 install if needed, start all three (or the named ones), wait until
#                                 they answer. Prometheus (Debian's) scrapes the targets listed in
#                                 $SEGMENTER_PROMETHEUS_TARGETS/*.json (file_sd) every second and
#                                 loads deploy/prometheus/alerts.yml
#   scripts/services.sh stop [kafka|redis|prometheus]...   stop all (or the named ones)
#   scripts/services.sh status    say what is running
#   scripts/services.sh env       print SEGMENTER_KAFKA_BOOTSTRAP / SEGMENTER_REDIS_URL /
#                                 SEGMENTER_PROMETHEUS_URL / SEGMENTER_PROMETHEUS_TARGETS
#   scripts/services.sh reset     stop, then delete the state dir (topics, data, logs)
#
# Progress goes to stderr; stdout carries only KEY=VALUE lines and '#' comments,
# so `eval "$(scripts/services.sh start)"` works.
#
# Environment (all optional):
#   SEGMENTER_KAFKA_VERSION            Kafka version to fetch (default below)
#   SEGMENTER_SERVICES_HOME            jar cache (default ~/.cache/segmenter-services)
#   SEGMENTER_SERVICES_STATE           data, logs, pidfiles (default /tmp/segmenter-services)
#   SEGMENTER_KAFKA_PORT               broker port (default 19092)
#   SEGMENTER_KAFKA_CONTROLLER_PORT    KRaft controller port (default 19093)
#   SEGMENTER_REDIS_PORT               redis port (default 16379)
#   SEGMENTER_PROMETHEUS_PORT          Prometheus port (default 19090)
#   SEGMENTER_SERVICES_TIMEOUT         seconds to wait for readiness (default 90)
#   SEGMENTER_KAFKA_HEAP               JVM heap flags (default -Xms256m -Xmx512m)
#   SEGMENTER_PYTHON                   python used for the aiokafka readiness check
# A default port that is already taken by something else is replaced by a free
# one; an explicitly set port that is taken is an error.
set -euo pipefail

KAFKA_VERSION="${SEGMENTER_KAFKA_VERSION:-4.3.1}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICES_HOME="${SEGMENTER_SERVICES_HOME:-${HOME:-/root}/.cache/segmenter-services}"
KAFKA_HOME="$SERVICES_HOME/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
STATE="${SEGMENTER_SERVICES_STATE:-/tmp/segmenter-services}"
KAFKA_STATE="$STATE/kafka"
REDIS_STATE="$STATE/redis"
KAFKA_PID="$KAFKA_STATE/kafka.pid"
REDIS_PID="$REDIS_STATE/redis.pid"
PROM_STATE="$STATE/prometheus"
PROM_PID="$PROM_STATE/prometheus.pid"
PROM_TARGETS="$PROM_STATE/targets"
PORTS_FILE="$STATE/ports.env"
TIMEOUT="${SEGMENTER_SERVICES_TIMEOUT:-90}"
STOP_TIMEOUT=30
KAFKA_HEAP="${SEGMENTER_KAFKA_HEAP:--Xms256m -Xmx512m}"
PYTHON="${SEGMENTER_PYTHON:-python3}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# --- locking: parallel callers (test workers, other checkouts) must not race ---
# The fd is closed (9>&-) for every long-lived child, or the child would hold it.
lock() {  # lock FILE
    mkdir -p "$(dirname "$1")"
    exec 9>"$1"
    flock -w 600 9 || die "could not lock $1 within 600 s"
}
unlock() { exec 9>&-; }

# --- small helpers -----------------------------------------------------------
pid_alive() {  # pid_alive PIDFILE [CMDLINE-SUBSTRING]: live process that is ours
    local f="$1" want="${2:-}" pid
    [ -s "$f" ] || return 1
    pid="$(cat "$f" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # guards against a recycled pid belonging to some unrelated process
    [ -z "$want" ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$want"
}

port_busy() {  # something accepts connections on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
        || python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

choose_port() {  # choose_port ENVVAR DEFAULT LABEL -> port on stdout
    local var="$1" def="$2" label="$3" val="${!1:-}"
    if [ -n "$val" ]; then
        port_busy "$val" && die "$label port $val (from $var) is already in use by another process"
        echo "$val"
    elif port_busy "$def"; then
        local p; p="$(free_port)"
        log "default $label port $def is in use by another process; using free port $p"
        echo "$p"
    else
        echo "$def"
    fi
}

load_ports() {  # ports recorded by the last start, else env/defaults
    KAFKA_PORT="${SEGMENTER_KAFKA_PORT:-19092}"
    CONTROLLER_PORT="${SEGMENTER_KAFKA_CONTROLLER_PORT:-19093}"
    REDIS_PORT="${SEGMENTER_REDIS_PORT:-16379}"
    PROM_PORT="${SEGMENTER_PROMETHEUS_PORT:-19090}"
    if [ -f "$PORTS_FILE" ]; then
        # shellcheck disable=SC1090
        . "$PORTS_FILE"
    fi
}

save_ports() {
    mkdir -p "$STATE"
    printf 'KAFKA_PORT=%s\nCONTROLLER_PORT=%s\nREDIS_PORT=%s\nPROM_PORT=%s\n' \
        "$KAFKA_PORT" "$CONTROLLER_PORT" "$REDIS_PORT" "$PROM_PORT" >"$PORTS_FILE.tmp"
    mv "$PORTS_FILE.tmp" "$PORTS_FILE"
}

print_env() {
    echo "SEGMENTER_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
    echo "SEGMENTER_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    echo "SEGMENTER_PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT"
    echo "SEGMENTER_PROMETHEUS_TARGETS=$PROM_TARGETS"
}

apt_install() {  # apt_install PACKAGE...
    is_root || return 1
    export DEBIAN_FRONTEND=noninteractive
    # a fresh machine has empty package lists: update once and retry
    apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; }
}

need_cmd() {  # need_cmd COMMAND APT-PACKAGE [APT-GET-OPTION]...
    command -v "$1" >/dev/null 2>&1 && return 0
    if is_root; then
        log "$1 not found; installing Debian package $2"
        apt_install "${@:3}" "$2" || die "apt-get install $2 failed"
        command -v "$1" >/dev/null 2>&1 || die "$1 still not on PATH after installing $2"
    else
        die "$1 is not on PATH and this is not root: install it, e.g. 'sudo apt-get install -y $2'"
    fi
}

# --- install -----------------------------------------------------------------
# promtool (alert rule tests) comes with Debian's prometheus; docker-compose checks
# docker-compose.yml (`config` needs no Docker daemon, so no docker.io recommends)
TOOLS=(promtool prometheus docker-compose)
tools_installed() {
    local t
    for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || return 1; done
}
need_tools() {
    need_cmd promtool prometheus --no-install-recommends
    need_cmd docker-compose docker-compose --no-install-recommends
}

kafka_installed() { [ -f "$KAFKA_HOME/.complete" ] && [ -d "$LIBS" ]; }

cmd_install() {
    need_cmd java openjdk-17-jre-headless
    need_cmd redis-server redis-server
    need_cmd redis-cli redis-tools
    need_tools
    if kafka_installed; then
        log "Kafka $KAFKA_VERSION already in $LIBS"
        return 0
    fi
    lock "$SERVICES_HOME/.install.lock"
    if ! kafka_installed; then  # another caller may have finished while we waited
        need_cmd mvn maven
        log "fetching Kafka $KAFKA_VERSION and its runtime dependencies from Maven Central..."
        local tmp="$KAFKA_HOME/libs.tmp.$$"
        rm -rf "$tmp" && mkdir -p "$tmp"
        local t0=$SECONDS
        # -DincludeScope=runtime: Kafka's poms mark most broker modules as runtime deps
        if ! mvn -B -q -Dstyle.color=never -f "$SCRIPT_DIR/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
                dependency:copy-dependencies -DincludeScope=runtime \
                -DoutputDirectory="$tmp" >&2 </dev/null; then
            rm -rf "$tmp"
            die "maven could not fetch Kafka $KAFKA_VERSION (see output above)"
        fi
        ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after maven run"
        rm -rf "$LIBS" && mv "$tmp" "$LIBS"
        cp "$SCRIPT_DIR/kafka-pom.xml" "$KAFKA_HOME/pom.xml"
        touch "$KAFKA_HOME/.complete"
        log "Kafka $KAFKA_VERSION installed: $(ls "$LIBS" | wc -l) jars in $((SECONDS - t0)) s"
    fi
    unlock
}

# --- kafka -------------------------------------------------------------------
write_kafka_config() {
    mkdir -p "$KAFKA_STATE/logs"
    cat >"$KAFKA_STATE/server.properties" <<EOF
# generated by scripts/services.sh: single-node KRaft test broker
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_STATE/data

# one broker: every internal topic must live with replication factor 1
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=true
delete.topic.enable=true
# consumers in tests should not sit out a 3 s join delay
group.initial.rebalance.delay.ms=0

# small footprint for a 2-core test machine
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.segment.bytes=16777216
log.retention.hours=24
# the cleaner (compacted changelog topics) grabs 128 MB by default
log.cleaner.dedupe.buffer.size=16777216
EOF
    cat >"$KAFKA_STATE/log4j2.properties" <<'EOF'
# broker log: overwritten at each start so a failure's tail is about this run
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
    cat >"$KAFKA_STATE/tools-log4j2.properties" <<'EOF'
# command-line tools (StorageTool, TopicCommand): warnings only, to stderr
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

kafka_tool() {  # kafka_tool MAIN-CLASS ARGS...
    java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_STATE/tools-log4j2.properties" \
        -cp "$LIBS/*" "$@" 9>&-
}

format_kafka_storage() {
    local data="$KAFKA_STATE/data"
    # meta.properties is written last by the format; without it the dir is junk
    if [ -f "$data/meta.properties" ]; then
        return 0
    fi
    rm -rf "$data"
    local cluster_id
    cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid)"
    log "formatting KRaft storage in $data (cluster id $cluster_id)"
    # static quorum (controller.quorum.voters) => plain format, no --standalone
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$KAFKA_STATE/server.properties" >&2 </dev/null \
        || die "kafka storage format failed"
    echo "$cluster_id" >"$KAFKA_STATE/cluster.id"
}

launch_kafka() {
    write_kafka_config
    format_kafka_storage
    # keep the previous run's log aside: a JVM that dies early writes no new one
    [ ! -f "$KAFKA_STATE/logs/server.log" ] || mv -f "$KAFKA_STATE/logs/server.log" "$KAFKA_STATE/logs/server.log.prev"
    log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller :$CONTROLLER_PORT)"
    # setsid: survive the caller's terminal/process group (pytest, make, ^C);
    # bash -c 'echo $$; exec java': the pidfile holds the JVM's own pid.
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PID" \
        java $KAFKA_HEAP -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_STATE/logs" \
        -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" \
        -cp "$LIBS/*" kafka.Kafka "$KAFKA_STATE/server.properties" \
        </dev/null >"$KAFKA_STATE/logs/kafka.out" 2>&1 9>&- &
    # wait for the pidfile so later checks see this JVM
    local i
    for i in $(seq 50); do [ -s "$KAFKA_PID" ] && break; sleep 0.1; done
}

# shellcheck disable=SC2016
AIOKAFKA_CHECK='
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        # a Metadata round trip: the broker is registered and serving requests
        await asyncio.wait_for(admin.list_topics(), 10)
    finally:
        await admin.close()
asyncio.run(main())
'

kafka_answers() {
    if [ -z "${_HAVE_AIOKAFKA:-}" ]; then
        if "$PYTHON" -c 'import aiokafka' 2>/dev/null; then _HAVE_AIOKAFKA=yes; else _HAVE_AIOKAFKA=no; fi
    fi
    # a bare TCP connect is not enough: the broker opens its port before it can serve
    port_busy "$KAFKA_PORT" || return 1
    if [ "$_HAVE_AIOKAFKA" = yes ]; then
        timeout 30 "$PYTHON" -c "$AIOKAFKA_CHECK" "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1 9>&-
    else
        timeout 30 java -Xmx128m -Dlog4j2.configurationFile="$KAFKA_STATE/tools-log4j2.properties" \
            -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand \
            --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>&1 9>&-
    fi
}

kafka_running() { pid_alive "$KAFKA_PID" kafka.Kafka; }

wait_kafka() {
    local deadline=$((SECONDS + TIMEOUT))
    while ! kafka_answers; do
        if ! kafka_running; then
            log "Kafka exited during startup; last lines of $KAFKA_STATE/logs:"
            tail -n 40 "$KAFKA_STATE/logs/server.log" >&2 2>/dev/null || true
            tail -n 20 "$KAFKA_STATE/logs/kafka.out" >&2 2>/dev/null || true
            die "Kafka did not start"
        fi
        if [ $SECONDS -ge $deadline ]; then
            log "Kafka not answering on 127.0.0.1:$KAFKA_PORT after ${TIMEOUT}s; last lines of server.log:"
            tail -n 40 "$KAFKA_STATE/logs/server.log" >&2 2>/dev/null || true
            tail -n 20 "$KAFKA_STATE/logs/kafka.out" >&2 2>/dev/null || true
            die "Kafka did not become ready within ${TIMEOUT}s (logs: $KAFKA_STATE/logs)"
        fi
        sleep 1
    done
}

# --- redis -------------------------------------------------------------------
redis_running() { pid_alive "$REDIS_PID" redis-server; }

redis_answers() {
    [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

launch_redis() {
    mkdir -p "$REDIS_STATE"
    rm -f "$REDIS_PID"
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    # --save '' --appendonly no: throwaway test data, never written to disk
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$REDIS_PID" --logfile "$REDIS_STATE/redis.log" --dir "$REDIS_STATE" \
        --save '' --appendonly no </dev/null >/dev/null 2>&1 9>&- \
        || { tail -n 20 "$REDIS_STATE/redis.log" >&2 2>/dev/null || true; die "redis-server failed to start"; }
}

wait_redis() {
    local deadline=$((SECONDS + TIMEOUT))
    until redis_answers; do
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$REDIS_STATE/redis.log" >&2 2>/dev/null || true
            die "redis did not answer PING on 127.0.0.1:$REDIS_PORT after ${TIMEOUT}s"
        fi
        sleep 0.2
    done
}

prometheus_running() { pid_alive "$PROM_PID" prometheus; }

prometheus_answers() {
    curl -fsS -m 5 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1
}

write_prometheus_config() {
    mkdir -p "$PROM_STATE/data" "$PROM_TARGETS"
    # the deploy/ rules, and whatever workers the tests list in targets/*.json (re-read every second)
    cat >"$PROM_STATE/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $(cd "$SCRIPT_DIR/.." && pwd)/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: segmenter
    metrics_path: /metrics
    file_sd_configs:
      - files: ["$PROM_TARGETS/*.json"]
        refresh_interval: 1s
CONF
}

launch_prometheus() {
    write_prometheus_config
    rm -f "$PROM_PID"
    log "starting prometheus on 127.0.0.1:$PROM_PORT"
    nohup prometheus --config.file="$PROM_STATE/prometheus.yml" --storage.tsdb.path="$PROM_STATE/data" \
        --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$PROM_PORT" \
        </dev/null >"$PROM_STATE/prometheus.log" 2>&1 9>&- &
    echo $! >"$PROM_PID"
}

wait_prometheus() {
    local deadline=$((SECONDS + TIMEOUT))
    until prometheus_answers; do
        if [ $SECONDS -ge $deadline ] || ! prometheus_running; then
            tail -n 20 "$PROM_STATE/prometheus.log" >&2 2>/dev/null || true
            die "prometheus did not get ready on 127.0.0.1:$PROM_PORT after ${TIMEOUT}s"
        fi
        sleep 0.2
    done
}

# --- commands ----------------------------------------------------------------
STARTED=()
START_OK=
start_cleanup() {  # EXIT trap of start: a failed start leaves nothing of its own running
    [ -z "$START_OK" ] || return 0
    local s
    for s in "${STARTED[@]}"; do
        case "$s" in
            kafka) stop_pidfile Kafka "$KAFKA_PID" kafka.Kafka ;;
            redis) stop_pidfile redis "$REDIS_PID" redis-server ;;
            prometheus) stop_pidfile prometheus "$PROM_PID" prometheus ;;
        esac
    done
}

wants() {  # wants SERVICE: named by start's arguments (none named: all)
    [ ${#WANT[@]} -eq 0 ] && return 0
    local w
    for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done
    return 1
}

cmd_start() {
    WANT=("$@")
    local w
    for w in "${WANT[@]}"; do
        case "$w" in kafka|redis|prometheus) ;; *) die "start: unknown service '$w' (kafka|redis|prometheus)" ;; esac
    done
    kafka_installed && command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 \
        && tools_installed || cmd_install
    command -v java >/dev/null 2>&1 || need_cmd java openjdk-17-jre-headless
    lock "$STATE/.lock"
    local t0=$SECONDS
    trap start_cleanup EXIT
    load_ports
    # a live service keeps its recorded port; a different explicit port is a conflict
    if kafka_running; then
        [ -z "${SEGMENTER_KAFKA_PORT:-}" ] || [ "$SEGMENTER_KAFKA_PORT" = "$KAFKA_PORT" ] \
            || die "Kafka already runs on port $KAFKA_PORT, not $SEGMENTER_KAFKA_PORT: '$0 stop' first"
    else
        KAFKA_PORT="$(choose_port SEGMENTER_KAFKA_PORT 19092 Kafka)"
        CONTROLLER_PORT="$(choose_port SEGMENTER_KAFKA_CONTROLLER_PORT 19093 'Kafka controller')"
        [ "$KAFKA_PORT" != "$CONTROLLER_PORT" ] || die "Kafka and controller ports are both $KAFKA_PORT"
    fi
    if redis_running; then
        [ -z "${SEGMENTER_REDIS_PORT:-}" ] || [ "$SEGMENTER_REDIS_PORT" = "$REDIS_PORT" ] \
            || die "redis already runs on port $REDIS_PORT, not $SEGMENTER_REDIS_PORT: '$0 stop' first"
    else
        REDIS_PORT="$(choose_port SEGMENTER_REDIS_PORT 16379 redis)"
    fi
    if prometheus_running; then
        [ -z "${SEGMENTER_PROMETHEUS_PORT:-}" ] || [ "$SEGMENTER_PROMETHEUS_PORT" = "$PROM_PORT" ] \
            || die "prometheus already runs on port $PROM_PORT, not $SEGMENTER_PROMETHEUS_PORT: '$0 stop' first"
    else
        PROM_PORT="$(choose_port SEGMENTER_PROMETHEUS_PORT 19090 prometheus)"
    fi
    save_ports

    if ! wants kafka; then
        :
    elif kafka_running; then
        log "Kafka already running (pid $(cat "$KAFKA_PID")) on 127.0.0.1:$KAFKA_PORT"
    else
        STARTED+=(kafka)
        launch_kafka
    fi
    if ! wants redis; then
        :
    elif redis_running; then
        log "redis already running (pid $(cat "$REDIS_PID")) on 127.0.0.1:$REDIS_PORT"
    else
        STARTED+=(redis)
        launch_redis
    fi
    if ! wants prometheus; then
        :
    elif prometheus_running; then
        # the config and deploy/ rules may have changed since it started: SIGHUP reloads both
        write_prometheus_config
        kill -HUP "$(cat "$PROM_PID")"
        log "prometheus already running (pid $(cat "$PROM_PID")) on 127.0.0.1:$PROM_PORT; config and rules reloaded"
    else
        STARTED+=(prometheus)
        launch_prometheus
    fi
    # redis and prometheus are up in a second; Kafka takes seconds, so wait for it last
    if wants redis; then wait_redis; fi
    if wants prometheus; then wait_prometheus; fi
    if wants kafka; then wait_kafka; fi
    START_OK=1
    unlock
    log "ready in $((SECONDS - t0)) s"
    echo "# started: ${STARTED[*]:-nothing (already running)}"
    print_env
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE CMDLINE-SUBSTRING
    local name="$1" f="$2" want="$3" pid i
    if ! pid_alive "$f" "$want"; then
        rm -f "$f"
        log "$name not running"
        return 0
    fi
    pid="$(cat "$f")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq $((STOP_TIMEOUT * 5))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not exit within ${STOP_TIMEOUT}s; kill -9"
        kill -KILL "$pid" 2>/dev/null || true
        for i in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$f"
}

cmd_stop() {
    local which=("$@")
    [ ${#which[@]} -gt 0 ] || which=(kafka redis prometheus)
    lock "$STATE/.lock"
    local s
    for s in "${which[@]}"; do
        case "$s" in
            kafka) stop_pidfile Kafka "$KAFKA_PID" kafka.Kafka ;;
            redis) stop_pidfile redis "$REDIS_PID" redis-server ;;
            prometheus) stop_pidfile prometheus "$PROM_PID" prometheus ;;
            *) die "stop: unknown service '$s' (kafka|redis|prometheus)" ;;
        esac
    done
    # nothing left running: forget the ports, so `env` reports the defaults again
    kafka_running || redis_running || prometheus_running || rm -f "$PORTS_FILE"
    unlock
}

service_status() {  # name, running check, answers check, pid file, port, detail, suffix when not answering
    local name=$1 running=$2 answers=$3 pidfile=$4 port=$5 detail=$6 waiting=$7
    if ! $running; then
        echo "$name: stopped"; return 1
    fi
    if $answers; then
        echo "$name: running (pid $(cat "$pidfile")$detail) on 127.0.0.1:$port, answering"; return 0
    fi
    echo "$name: running (pid $(cat "$pidfile")) on 127.0.0.1:$port, NOT answering$waiting"; return 1
}

cmd_status() {
    load_ports
    local rc=0
    service_status kafka kafka_running kafka_answers "$KAFKA_PID" "$KAFKA_PORT" ", version $KAFKA_VERSION" " yet" || rc=1
    service_status redis redis_running redis_answers "$REDIS_PID" "$REDIS_PORT" "" "" || rc=1
    service_status prometheus prometheus_running prometheus_answers "$PROM_PID" "$PROM_PORT" "" "" || rc=1
    echo "state: $STATE"
    return $rc
}

cmd_reset() {
    cmd_stop
    log "removing $STATE"
    rm -rf "$STATE"
}

main() {
    local cmd="${1:-}"
    [ $# -eq 0 ] || shift
    case "$cmd" in
        install) cmd_install ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status ;;
        env) load_ports; print_env ;;
        reset) cmd_reset ;;
        *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
