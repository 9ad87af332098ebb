# The local cluster of `scripts/services ... --cluster`, sourced by
# scripts/services (it uses that script's log, die, pid_alive, port_open,
# install_kafka, install_clickhouse, apt_install, make_tls, stop_one,
# wait_one and status_one). On loopback, from the same sources as the single
# node, and on ports and in folders of its own, so that both run side by side:
#   - Kafka: three KRaft nodes, each broker and controller (the Maven jars of
#     scripts/kafka/pom.xml, the node settings of scripts/cluster/kafka.properties);
#   - ZooKeeper: one server from Debian's zookeeper package (pinned);
#   - ClickHouse: two clickhouse-server processes from Debian's package, the
#     two replicas of shard 01 of the cluster `telemetry`.
#
# usage: scripts/services install|start|stop|restart|status|wait|clean --cluster
#        scripts/services stop-replica --cluster N   (ClickHouse replica N only)
#        scripts/services stop-broker|kill-broker|start-broker --cluster N
#                                                    (Kafka node N only)
#
# `wait --cluster` waits for explicit signals: ZooKeeper answers `ruok`; each
# broker has started and the cluster's metadata lists all three brokers; each
# ClickHouse replica answers SELECT 1 and reads system.zookeeper.
#
# Environment (defaults in brackets; node N of Kafka and replica N of
# ClickHouse take the base port + N - 1; all apart from the single node's
# ports and from the broker of scripts/faults, 19092/19093):
#   TELEMETRY_CLUSTER_DIR               [$TELEMETRY_DATA_DIR/cluster]
#   CLUSTER_KAFKA_PORT                  [29092]  brokers 29092, 29093, 29094
#   CLUSTER_KAFKA_CONTROLLER_PORT       [29192]  controllers 29192..29194
#   CLUSTER_KAFKA_HEAP_OPTS             [-Xms128m -Xmx512m]  per node
#   CLUSTER_ZOOKEEPER_PORT              [22181]
#   CLUSTER_ZOOKEEPER_HEAP_OPTS         [-Xms32m -Xmx256m]
#   ZOOKEEPER_DEB_VERSION               [3.8.0-11+deb12u2]  the pinned package
#   CLUSTER_CLICKHOUSE_HTTP_PORT        [28123]  replicas 28123, 28124
#   CLUSTER_CLICKHOUSE_TCP_PORT         [29000]  replicas 29000, 29001
#   CLUSTER_CLICKHOUSE_HTTPS_PORT       [28443]  replicas 28443, 28444
#   CLUSTER_CLICKHOUSE_INTERSERVER_PORT [29009]  replicas 29009, 29010
# shellcheck shell=bash

CLUSTER_DIR=${TELEMETRY_CLUSTER_DIR:-$DATA/cluster}
CLUSTER_KAFKA_PORT=${CLUSTER_KAFKA_PORT:-29092}
CLUSTER_KAFKA_CONTROLLER_PORT=${CLUSTER_KAFKA_CONTROLLER_PORT:-29192}
CLUSTER_KAFKA_HEAP_OPTS=${CLUSTER_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
CLUSTER_ZOOKEEPER_PORT=${CLUSTER_ZOOKEEPER_PORT:-22181}
CLUSTER_ZOOKEEPER_HEAP_OPTS=${CLUSTER_ZOOKEEPER_HEAP_OPTS:--Xms32m -Xmx256m}
ZOOKEEPER_DEB_VERSION=${ZOOKEEPER_DEB_VERSION:-3.8.0-11+deb12u2}
CLUSTER_CLICKHOUSE_HTTP_PORT=${CLUSTER_CLICKHOUSE_HTTP_PORT:-28123}
CLUSTER_CLICKHOUSE_TCP_PORT=${CLUSTER_CLICKHOUSE_TCP_PORT:-29000}
CLUSTER_CLICKHOUSE_HTTPS_PORT=${CLUSTER_CLICKHOUSE_HTTPS_PORT:-28443}
CLUSTER_CLICKHOUSE_INTERSERVER_PORT=${CLUSTER_CLICKHOUSE_INTERSERVER_PORT:-29009}

CLUSTER_KAFKA_NODES=(1 2 3)
CLUSTER_CLICKHOUSE_REPLICAS=(1 2)
ZK_DIR=$CLUSTER_DIR/zookeeper

# The bootstrap list a client of the cluster uses.
cluster_kafka_brokers() {
  local n list=()
  for n in "${CLUSTER_KAFKA_NODES[@]}"; do list+=("127.0.0.1:$((CLUSTER_KAFKA_PORT + n - 1))"); done
  (IFS=,; echo "${list[*]}")
}

# --- zookeeper ----------------------------------------------------------

install_zookeeper() {
  local have
  have=$(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || true)
  if [ -n "$have" ]; then
    [ "$have" = "$ZOOKEEPER_DEB_VERSION" ] \
      || log "zookeeper $have is installed, not the pinned $ZOOKEEPER_DEB_VERSION; using it"
    return
  fi
  log "installing zookeeper $ZOOKEEPER_DEB_VERSION from Debian"
  # A point release replaces the pinned version in the archive: then the
  # current one, said loudly, rather than no cluster at all.
  if ! apt_install "zookeeper=$ZOOKEEPER_DEB_VERSION"; then
    log "warning: zookeeper $ZOOKEEPER_DEB_VERSION is not in the archive; installing its current version"
    apt_install zookeeper
  fi
}

start_zookeeper() {
  install_zookeeper
  if pid_alive "$ZK_DIR/zookeeper.pid"; then
    log "zookeeper already running (pid $(cat "$ZK_DIR/zookeeper.pid"))"
    return
  fi
  port_open "$CLUSTER_ZOOKEEPER_PORT" && die "port $CLUSTER_ZOOKEEPER_PORT is taken by another process"
  mkdir -p "$ZK_DIR/data"
  sed -e "s#@DATA@#$ZK_DIR#g" -e "s#@PORT@#$CLUSTER_ZOOKEEPER_PORT#g" \
    "$ROOT/scripts/cluster/zoo.cfg" > "$ZK_DIR/zoo.cfg"
  [ -f "$ZK_DIR/zookeeper.log" ] && mv -f "$ZK_DIR/zookeeper.log" "$ZK_DIR/zookeeper.log.prev"
  # zookeeper.jar names its dependencies in its manifest; slf4j-simple (from
  # the same packages) writes the log to stderr, kept in zookeeper.log.
  # shellcheck disable=SC2086
  setsid nohup java $CLUSTER_ZOOKEEPER_HEAP_OPTS -Djava.awt.headless=true \
    -Dzookeeper.jmx.log4j.disable=true -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_DIR/zoo.cfg" \
    > "$ZK_DIR/zookeeper.log" 2>&1 < /dev/null &
  echo $! > "$ZK_DIR/zookeeper.pid"
  log "zookeeper starting on 127.0.0.1:$CLUSTER_ZOOKEEPER_PORT (pid $!)"
}

# One of ZooKeeper's four-letter commands, and its answer.
zookeeper_word() {
  (exec 3<>"/dev/tcp/127.0.0.1/$CLUSTER_ZOOKEEPER_PORT" && printf '%s' "$1" >&3 && timeout 2 cat <&3) 2>/dev/null
}

zookeeper_ready() { [ "$(zookeeper_word ruok)" = imok ]; }

# --- kafka --------------------------------------------------------------

# The java command line of node $1, for the storage tool and the broker.
cluster_kafka_java() {
  # shellcheck disable=SC2206
  KAFKA_JAVA=(java $CLUSTER_KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true
    -Dkafka.logs.dir="$CLUSTER_DIR/kafka-$1"
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties"
    -cp "$KAFKA_JARS/*")
}

start_cluster_kafka_node() { # node
  local n=$1 dir=$CLUSTER_DIR/kafka-$1 port voters="" m
  port=$((CLUSTER_KAFKA_PORT + n - 1))
  if pid_alive "$dir/kafka.pid"; then
    log "kafka-$n already running (pid $(cat "$dir/kafka.pid"))"
    return
  fi
  port_open "$port" && die "port $port is taken by another process"
  for m in "${CLUSTER_KAFKA_NODES[@]}"; do
    voters+="${voters:+,}$m@127.0.0.1:$((CLUSTER_KAFKA_CONTROLLER_PORT + m - 1))"
  done
  mkdir -p "$dir"
  sed -e "s#@DATA@#$dir#g" -e "s#@NODE_ID@#$n#g" -e "s#@PORT@#$port#g" \
      -e "s#@CONTROLLER_PORT@#$((CLUSTER_KAFKA_CONTROLLER_PORT + n - 1))#g" \
      -e "s#@VOTERS@#$voters#g" \
      "$ROOT/scripts/cluster/kafka.properties" > "$dir/server.properties"
  cluster_kafka_java "$n"
  if [ ! -f "$dir/logs/meta.properties" ]; then
    # The three nodes share one cluster id, made by the first one formatted.
    if [ ! -f "$CLUSTER_DIR/kafka-cluster-id" ]; then
      "${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid > "$CLUSTER_DIR/kafka-cluster-id"
    fi
    log "formatting kafka-$n storage (cluster $(cat "$CLUSTER_DIR/kafka-cluster-id"))"
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted \
      -t "$(cat "$CLUSTER_DIR/kafka-cluster-id")" -c "$dir/server.properties" >&2
  fi
  [ -f "$dir/server.log" ] && mv -f "$dir/server.log" "$dir/server.log.prev"
  setsid nohup "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties" \
    > "$dir/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/kafka.pid"
  log "kafka-$n starting on 127.0.0.1:$port (pid $!)"
}

cluster_kafka_node_ready() { # node
  port_open "$((CLUSTER_KAFKA_PORT + $1 - 1))" \
    && grep -q "Kafka Server started" "$CLUSTER_DIR/kafka-$1/server.log" 2>/dev/null
}

# How many brokers the cluster's metadata lists (unfenced, reachable ones).
cluster_kafka_broker_count() {
  cluster_kafka_java 1
  "${KAFKA_JAVA[@]}" -Dkafka.logs.dir="$CLUSTER_DIR/tools" \
    org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$(cluster_kafka_brokers)" 2>/dev/null | grep -c "(id: " || true
}

# Waits until the metadata lists every broker: only then can a topic with
# three replicas be created.
wait_cluster_kafka_brokers() {
  local want=${#CLUSTER_KAFKA_NODES[@]} have deadline=$((SECONDS + WAIT_SECS))
  mkdir -p "$CLUSTER_DIR/tools"
  while :; do
    have=$(cluster_kafka_broker_count)
    [ "$have" -ge "$want" ] && break
    [ $SECONDS -ge $deadline ] && die "the kafka cluster lists $have of $want brokers after ${WAIT_SECS}s"
    sleep 0.5
  done
  log "kafka cluster ready: $have brokers at $(cluster_kafka_brokers)"
}

# --- clickhouse ---------------------------------------------------------

start_cluster_clickhouse_replica() { # replica
  local n=$1 dir=$CLUSTER_DIR/clickhouse-$1 http tcp
  http=$((CLUSTER_CLICKHOUSE_HTTP_PORT + n - 1))
  tcp=$((CLUSTER_CLICKHOUSE_TCP_PORT + n - 1))
  if pid_alive "$dir/clickhouse.pid"; then
    log "clickhouse-$n already running (pid $(cat "$dir/clickhouse.pid"))"
    return
  fi
  port_open "$http" && die "port $http is taken by another process"
  port_open "$tcp" && die "port $tcp is taken by another process"
  mkdir -p "$dir/log" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/etc/config.d"
  make_tls
  # The single node's configuration with this replica's ports and folder...
  sed -e "s#@DATA@#$dir#g" -e "s#@HTTP_PORT@#$http#g" -e "s#@TCP_PORT@#$tcp#g" \
      -e "s#@HTTPS_PORT@#$((CLUSTER_CLICKHOUSE_HTTPS_PORT + n - 1))#g" -e "s#@TLS@#$TLS_DIR#g" \
      "$ROOT/scripts/clickhouse/config.xml" > "$dir/etc/config.xml"
  cp "$ROOT/scripts/clickhouse/users.xml" "$dir/etc/users.xml"
  # ...and what makes it a replica, which clickhouse-server reads from config.d.
  sed -e "s#@INTERSERVER_PORT@#$((CLUSTER_CLICKHOUSE_INTERSERVER_PORT + n - 1))#g" \
      -e "s#@ZOOKEEPER_PORT@#$CLUSTER_ZOOKEEPER_PORT#g" -e "s#@REPLICA@#replica-$n#g" \
      -e "s#@TCP_PORT_1@#$CLUSTER_CLICKHOUSE_TCP_PORT#g" \
      -e "s#@TCP_PORT_2@#$((CLUSTER_CLICKHOUSE_TCP_PORT + 1))#g" \
      "$ROOT/scripts/cluster/clickhouse.xml" > "$dir/etc/config.d/cluster.xml"
  setsid nohup clickhouse-server --config-file="$dir/etc/config.xml" \
    > "$dir/log/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/clickhouse.pid"
  log "clickhouse-$n starting on 127.0.0.1:$http (pid $(cat "$dir/clickhouse.pid"))"
}

cluster_clickhouse_query() { # replica query
  curl -fsS --max-time 5 "http://127.0.0.1:$((CLUSTER_CLICKHOUSE_HTTP_PORT + $1 - 1))/" \
    --data-binary "$2" 2>/dev/null
}

# Answers SELECT 1, and reaches ZooKeeper (system.zookeeper reads from it).
cluster_clickhouse_replica_ready() { # replica
  [ "$(cluster_clickhouse_query "$1" 'SELECT 1')" = 1 ] \
    && cluster_clickhouse_query "$1" "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null
}

# --- commands -----------------------------------------------------------

cluster_start() {
  local n
  install_kafka
  start_zookeeper
  mkdir -p "$CLUSTER_DIR"
  for n in "${CLUSTER_KAFKA_NODES[@]}"; do start_cluster_kafka_node "$n"; done
  install_clickhouse
  for n in "${CLUSTER_CLICKHOUSE_REPLICAS[@]}"; do start_cluster_clickhouse_replica "$n"; done
}

# wait_one and status_one run their readiness check unquoted, so that it may
# carry the node's number.
cluster_wait() {
  local n
  wait_one zookeeper zookeeper_ready "$ZK_DIR/zookeeper.pid" "$ZK_DIR/zookeeper.log"
  for n in "${CLUSTER_KAFKA_NODES[@]}"; do
    wait_one "kafka-$n" "cluster_kafka_node_ready $n" "$CLUSTER_DIR/kafka-$n/kafka.pid" \
      "$CLUSTER_DIR/kafka-$n/server.log"
  done
  wait_cluster_kafka_brokers
  for n in "${CLUSTER_CLICKHOUSE_REPLICAS[@]}"; do
    wait_one "clickhouse-$n" "cluster_clickhouse_replica_ready $n" "$CLUSTER_DIR/clickhouse-$n/clickhouse.pid" \
      "$CLUSTER_DIR/clickhouse-$n/log/clickhouse-server.err.log"
  done
}

cluster_stop() {
  local n
  for n in "${CLUSTER_CLICKHOUSE_REPLICAS[@]}"; do
    stop_one "clickhouse-$n" "$CLUSTER_DIR/clickhouse-$n/clickhouse.pid" &
  done
  wait
  # All three nodes at once: stopped one by one, the last ones would wait
  # for a controller quorum that is already gone.
  for n in "${CLUSTER_KAFKA_NODES[@]}"; do
    stop_one "kafka-$n" "$CLUSTER_DIR/kafka-$n/kafka.pid" &
  done
  wait
  stop_one zookeeper "$ZK_DIR/zookeeper.pid"
}

cluster_status() {
  local n rc=0
  status_one zookeeper zookeeper_ready "$ZK_DIR/zookeeper.pid" || rc=1
  for n in "${CLUSTER_KAFKA_NODES[@]}"; do
    status_one "kafka-$n" "cluster_kafka_node_ready $n" "$CLUSTER_DIR/kafka-$n/kafka.pid" || rc=1
  done
  for n in "${CLUSTER_CLICKHOUSE_REPLICAS[@]}"; do
    status_one "clickhouse-$n" "cluster_clickhouse_replica_ready $n" "$CLUSTER_DIR/clickhouse-$n/clickhouse.pid" || rc=1
  done
  return $rc
}

cluster_broker() { # stop-broker|kill-broker|start-broker node
  local dir=$CLUSTER_DIR/kafka-$2 pid
  case $1 in
    stop-broker) stop_one "kafka-$2" "$dir/kafka.pid" ;;
    kill-broker)
      if pid_alive "$dir/kafka.pid"; then
        pid=$(cat "$dir/kafka.pid")
        log "killing kafka-$2 (pid $pid)"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      fi
      rm -f "$dir/kafka.pid" ;;
    start-broker)
      install_kafka
      start_cluster_kafka_node "$2"
      wait_one "kafka-$2" "cluster_kafka_node_ready $2" "$dir/kafka.pid" "$dir/server.log"
      wait_cluster_kafka_brokers ;;
  esac
}

cluster_main() { # the command line, --cluster anywhere in it
  local cmd="" arg rest=()
  for arg in "$@"; do
    [ "$arg" = --cluster ] && continue
    if [ -z "$cmd" ]; then cmd=$arg; else rest+=("$arg"); fi
  done
  case $cmd in
    # One ClickHouse replica, for the fault check; `start --cluster` brings
    # it back (the rest are already running).
    stop-replica)
      [ "${#rest[@]}" = 1 ] || die "usage: scripts/services stop-replica --cluster N"
      stop_one "clickhouse-${rest[0]}" "$CLUSTER_DIR/clickhouse-${rest[0]}/clickhouse.pid" ;;
    # One Kafka node, for the fault checks: stop-broker is a controlled
    # shutdown (SIGTERM: it hands its leaderships over first), kill-broker
    # a crash (SIGKILL: the others elect new leaders once its session
    # lapses). start-broker brings it back and waits until it has started
    # and the metadata lists every broker again.
    stop-broker|kill-broker|start-broker)
      [ "${#rest[@]}" = 1 ] && [[ " ${CLUSTER_KAFKA_NODES[*]} " == *" ${rest[0]} "* ]] \
        || die "usage: scripts/services $cmd --cluster N (N in ${CLUSTER_KAFKA_NODES[*]})"
      cluster_broker "$cmd" "${rest[0]}" ;;
    install) install_kafka; install_zookeeper; install_clickhouse ;;
    start) cluster_start ;;
    stop) cluster_stop ;;
    restart) cluster_stop; cluster_start; cluster_wait ;;
    wait) cluster_wait ;;
    status) cluster_status ;;
    clean) cluster_stop; rm -rf "$CLUSTER_DIR" ;;
    *) die "usage: scripts/services install|start|stop|restart|status|wait|clean --cluster" ;;
  esac
}
