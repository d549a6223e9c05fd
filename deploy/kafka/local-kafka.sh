#!/usr/bin/env bash
# Run a single-node Apache Kafka broker on 127.0.0.1 for tests and demos.
#
# Usage: deploy/kafka/local-kafka.sh start|stop|status
#        deploy/kafka/local-kafka.sh tool CLASS [ARGUMENTS...]
#
#   start   Fetch the Kafka jars on first use, format the storage on first run,
#           start the broker in the background and wait until it serves admin
#           requests. Prints the bootstrap address (127.0.0.1:PORT) on stdout.
#           If this broker is already running, it waits for it to be ready and
#           prints the address.
#   stop    Stop the broker that this script started for PORT and wait for the
#           JVM to exit.
#   status  Print "running" (exit 0) or "stopped" (exit 3).
#   tool    Run a Kafka command-line tool class from the cached jars, for example
#           org.apache.kafka.tools.AclCommand. Its log goes to DATA/tools.log.
#
# The broker runs in KRaft mode with combined broker and controller roles. Its
# settings suit tests: topics are created on first use with one partition, and
# internal topics have replication factor 1.
#
# Environment:
#   LOCAL_KAFKA_PORT             broker (client) port, default 9092
#   LOCAL_KAFKA_CONTROLLER_PORT  KRaft controller port, default LOCAL_KAFKA_PORT + 1
#   LOCAL_KAFKA_DATA             data folder (config, logs, pid file, partitions),
#                                default <repo>/.cache/kafka-data-<port>
#   LOCAL_KAFKA_HOME             jar cache folder, default
#                                ${XDG_CACHE_HOME:-~/.cache}/anomalybert/kafka-<version>
#   LOCAL_KAFKA_HEAP_OPTS        broker heap options, default "-Xms256m -Xmx512m"
#   LOCAL_KAFKA_START_TIMEOUT    seconds to wait for the broker to serve requests,
#                                default 60
#   LOCAL_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL,
#                                default 60
#   JAVA_HOME                    Java 17 or newer; otherwise `java` on PATH
#   MVN                          Maven command, default `mvn` on PATH
#   LOCAL_KAFKA_SECURITY         plaintext (default) or sasl_ssl. sasl_ssl serves
#                                clients only on a SASL_SSL listener that offers
#                                PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and needs
#                                the next four variables.
#   LOCAL_KAFKA_SSL_KEYSTORE     PKCS12 keystore with the broker's key and a
#                                certificate valid for 127.0.0.1
#   LOCAL_KAFKA_SSL_TRUSTSTORE   PKCS12 truststore with the CA certificate
#   LOCAL_KAFKA_SSL_PASSWORD     password of both stores
#   LOCAL_KAFKA_SASL_USERS       space-separated NAME:PASSWORD pairs, with letters,
#                                digits, '.', '_' and '-' only. Each user gets
#                                PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
#                                credentials. The first user is the broker's own
#                                login and the one the readiness check uses.
#                                SCRAM credentials are stored when the data folder
#                                is formatted, so later changes need a new folder.
#   LOCAL_KAFKA_EXTRA_CONFIG     file appended to server.properties on every start,
#                                for example authorizer.class.name and super.users
#
# In sasl_ssl mode the config files in the data folder contain the passwords and
# are written with mode 600. The mode is meant for tests with throwaway
# credentials: the SCRAM passwords also appear on the command line of the
# storage formatter.
#
# Kafka version: 4.4.0 (set in pom.xml next to this script), the newest release
# on Maven Central when it was chosen. Kafka 4.0 removed old protocol API
# versions (KIP-896), so 4.4.0 was checked against aiokafka 0.14.0 first, with a
# 4.4.0 broker started by this script and tests/test_kafka_broker.py. These
# operations passed: produce and fetch, admin topic creation and deletion,
# consumer group join/sync/heartbeat with a rebalance between two members, and
# offset commit and fetch with a resume from the committed offset. The
# transactional producer passed too, with send_offsets_to_transaction while the
# group had an active member, and a read_committed consumer skipped an aborted
# transaction. No request failed, so no fallback to 3.9.x was needed.
# NOTE: aiokafka 0.14.0 uses the classic consumer group protocol and never the
# KIP-848 "consumer" protocol that Kafka 4.x also offers.
# On a fresh broker, the first consumer group makes aiokafka log one
# GroupCoordinatorNotAvailableError while the broker creates __consumer_offsets.
# aiokafka retries and the group then joins.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
HOST=127.0.0.1

PORT="${LOCAL_KAFKA_PORT:-9092}"
HEAP_OPTS="${LOCAL_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${LOCAL_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${LOCAL_KAFKA_STOP_TIMEOUT:-60}"
MVN="${MVN:-mvn}"
SECURITY="${LOCAL_KAFKA_SECURITY:-plaintext}"
EXTRA_CONFIG="${LOCAL_KAFKA_EXTRA_CONFIG:-}"
SASL_USER_NAMES=()
SASL_USER_PASSWORDS=()

log() {
    echo "local-kafka: $*" >&2
}

die() {
    log "error: $*"
    exit 1
}

usage() {
    echo "usage: $0 start|stop|status" >&2
    echo "       $0 tool CLASS [ARGUMENTS...]" >&2
    exit 2
}

validate_port() {
    local name="$1" value="$2"
    if ! [[ "$value" =~ ^[0-9]{1,5}$ ]] || ((10#$value < 1 || 10#$value > 65535)); then
        die "invalid $name '$value': expected a TCP port number from 1 to 65535"
    fi
}

validate_seconds() {
    local name="$1" value="$2"
    if ! [[ "$value" =~ ^[0-9]{1,6}$ ]] || ((10#$value < 1)); then
        die "invalid $name '$value': expected a whole number of seconds, at least 1"
    fi
}

# Validate the settings and derive the paths that depend on them.
configure() {
    validate_port LOCAL_KAFKA_PORT "$PORT"
    PORT=$((10#$PORT))
    CONTROLLER_PORT="${LOCAL_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
    validate_port LOCAL_KAFKA_CONTROLLER_PORT "$CONTROLLER_PORT"
    CONTROLLER_PORT=$((10#$CONTROLLER_PORT))
    if ((PORT == CONTROLLER_PORT)); then
        die "LOCAL_KAFKA_PORT and LOCAL_KAFKA_CONTROLLER_PORT must differ (both are $PORT)"
    fi
    validate_seconds LOCAL_KAFKA_START_TIMEOUT "$START_TIMEOUT"
    validate_seconds LOCAL_KAFKA_STOP_TIMEOUT "$STOP_TIMEOUT"
    START_TIMEOUT=$((10#$START_TIMEOUT))
    STOP_TIMEOUT=$((10#$STOP_TIMEOUT))

    BOOTSTRAP="$HOST:$PORT"
    DATA_DIR="${LOCAL_KAFKA_DATA:-$REPO_ROOT/.cache/kafka-data-$PORT}"
    PID_FILE="$DATA_DIR/kafka.pid"
    SERVER_CONFIG="$DATA_DIR/server.properties"
    ADMIN_CONFIG="$DATA_DIR/admin-client.properties"
    LOG_DIRS="$DATA_DIR/logs"
    CONSOLE_LOG="$DATA_DIR/kafka.out"

    configure_security

    KAFKA_VERSION="$(read_kafka_version)"
    KAFKA_HOME="${LOCAL_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/anomalybert/kafka-$KAFKA_VERSION}"
    LIBS_DIR="$KAFKA_HOME/libs"
}

# Check the LOCAL_KAFKA_SECURITY settings. SASL_USER_NAMES and
# SASL_USER_PASSWORDS list the users in order, the first being the broker's own.
configure_security() {
    if [[ -n "$EXTRA_CONFIG" && ! -f "$EXTRA_CONFIG" ]]; then
        die "LOCAL_KAFKA_EXTRA_CONFIG '$EXTRA_CONFIG' is not a file"
    fi
    case "$SECURITY" in
        plaintext)
            return 0
            ;;
        sasl_ssl) ;;
        *)
            die "invalid LOCAL_KAFKA_SECURITY '$SECURITY': expected plaintext or sasl_ssl"
            ;;
    esac

    local name
    for name in LOCAL_KAFKA_SSL_KEYSTORE LOCAL_KAFKA_SSL_TRUSTSTORE; do
        [[ -n "${!name:-}" ]] || die "LOCAL_KAFKA_SECURITY=sasl_ssl needs $name (a PKCS12 file)"
        [[ -f "${!name}" ]] || die "$name '${!name}' is not a file"
    done
    [[ -n "${LOCAL_KAFKA_SSL_PASSWORD:-}" ]] || die "LOCAL_KAFKA_SECURITY=sasl_ssl needs LOCAL_KAFKA_SSL_PASSWORD, the password of the keystore and truststore"
    [[ -n "${LOCAL_KAFKA_SASL_USERS:-}" ]] || die "LOCAL_KAFKA_SECURITY=sasl_ssl needs LOCAL_KAFKA_SASL_USERS, for example 'admin:admin-secret'"
    # The names and passwords go into JAAS options and properties files, where
    # quotes, spaces and backslashes would need escaping.
    [[ "$LOCAL_KAFKA_SSL_PASSWORD" =~ ^[A-Za-z0-9._-]+$ ]] || die "LOCAL_KAFKA_SSL_PASSWORD may contain only letters, digits, '.', '_' and '-'"
    local pair
    for pair in $LOCAL_KAFKA_SASL_USERS; do
        if ! [[ "$pair" =~ ^([A-Za-z0-9._-]+):([A-Za-z0-9._-]+)$ ]]; then
            die "invalid entry for user '${pair%%:*}' in LOCAL_KAFKA_SASL_USERS: expected NAME:PASSWORD with letters, digits, '.', '_' and '-' only"
        fi
        SASL_USER_NAMES+=("${BASH_REMATCH[1]}")
        SASL_USER_PASSWORDS+=("${BASH_REMATCH[2]}")
    done
}

# Read <kafka.version> from pom.xml, so the version is set in one place.
read_kafka_version() {
    local version
    version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$SCRIPT_DIR/pom.xml")"
    [[ -n "$version" ]] || die "kafka.version not found in $SCRIPT_DIR/pom.xml"
    echo "$version"
}

find_java() {
    local java_cmd version_line major
    if [[ -n "${JAVA_HOME:-}" ]]; then
        java_cmd="$JAVA_HOME/bin/java"
        [[ -x "$java_cmd" ]] || die "JAVA_HOME is set to '$JAVA_HOME' but $java_cmd is missing"
    else
        java_cmd="$(command -v java)" || die "java not found: install Java 17 or newer, or set JAVA_HOME"
    fi

    # The first line is e.g. 'openjdk version "17.0.15" 2025-04-15'.
    version_line="$("$java_cmd" -version 2>&1 | head -n 1)"
    major="$(sed -n 's/.*version "\([0-9]*\).*/\1/p' <<<"$version_line")"
    if [[ -z "$major" || "$major" -lt 17 ]]; then
        die "Kafka $KAFKA_VERSION needs Java 17 or newer, but $java_cmd reports: $version_line"
    fi
    echo "$java_cmd"
}

# Return 0 if the pid in PID_FILE is alive and is the broker JVM for DATA_DIR.
# A pid number alone can be reused by an unrelated process after a crash, so
# the command line must name kafka.Kafka and this data folder's config file.
# -ww keeps ps from cutting the command line to $COLUMNS characters.
broker_running() {
    local pid args
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    args="$(ps -ww -o args= -p "$pid" 2>/dev/null)" || return 1
    [[ "$args" == *java* && "$args" == *" kafka.Kafka $SERVER_CONFIG"* ]]
}

broker_pid() {
    cat "$PID_FILE"
}

# Return 0 while the pid exists and is not a zombie. A zombie stays visible to
# kill -0 until its parent reaps it, and the broker's parent is whatever
# adopted it after the starting shell exited.
process_alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z* ]]
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Copy the jars listed by pom.xml into $LIBS_DIR, unless a complete copy is
# already there. The copy goes to a temporary folder first and is then renamed,
# so an interrupted fetch never leaves a partial jar set in $LIBS_DIR.
fetch_jars() {
    [[ -f "$LIBS_DIR/.complete" ]] && return 0

    command -v "$MVN" >/dev/null || die "Maven ('$MVN') not found: install Maven 3.8 or newer, or set MVN"
    mkdir -p "$KAFKA_HOME"

    local tmp_dir maven_log started elapsed
    tmp_dir="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
    maven_log="$tmp_dir.log"
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS_DIR"
    started=$SECONDS
    if ! "$MVN" -B -f "$SCRIPT_DIR/pom.xml" \
        dependency:copy-dependencies \
        -DincludeScope=runtime \
        -DoutputDirectory="$tmp_dir" >"$maven_log" 2>&1; then
        tail -n 30 "$maven_log" >&2
        rm -rf "$tmp_dir"
        die "Maven failed to fetch the Kafka $KAFKA_VERSION jars (last lines of $maven_log above)"
    fi
    touch "$tmp_dir/.complete"
    mv "$maven_log" "$KAFKA_HOME/maven.log"

    # If a concurrent fetch created LIBS_DIR first, mv moves tmp_dir inside it.
    mv "$tmp_dir" "$LIBS_DIR"
    rm -rf "${LIBS_DIR:?}/$(basename "$tmp_dir")"
    [[ -f "$LIBS_DIR/.complete" ]] || die "$LIBS_DIR exists but is incomplete: delete it and run start again"
    elapsed=$((SECONDS - started))
    log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in ${elapsed}s (Maven log: $KAFKA_HOME/maven.log)"
}

# Run a Kafka tool class (not the broker) from the cached jars. Its log goes to
# $DATA_DIR/tools.log.
run_tool() {
    "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" \
        -Dkafka.logs.dir="$DATA_DIR" \
        -Dlocal.kafka.log.file=tools.log \
        -cp "$LIBS_DIR/*" "$@"
}

write_configs() {
    local client_listener=PLAINTEXT
    if [[ "$SECURITY" == sasl_ssl ]]; then
        client_listener=SASL_SSL
        # The files below contain passwords in this mode.
        umask 077
    fi

    # Internal topics get one partition (the defaults are 50) because a single
    # test broker gains nothing from more, and each partition costs open files
    # and start-up time.
    cat >"$SERVER_CONFIG" <<EOF
# Written by deploy/kafka/local-kafka.sh on every start. Edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=$client_listener://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=$client_listener://$HOST:$PORT
listener.security.protocol.map=$client_listener:$client_listener,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=$client_listener
log.dirs=$LOG_DIRS

auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
EOF

    cat >"$ADMIN_CONFIG" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=5000
EOF

    if [[ "$SECURITY" == sasl_ssl ]]; then
        write_security_configs
    fi
    if [[ -n "$EXTRA_CONFIG" ]]; then
        {
            echo
            echo "# Appended from LOCAL_KAFKA_EXTRA_CONFIG=$EXTRA_CONFIG"
            cat "$EXTRA_CONFIG"
        } >>"$SERVER_CONFIG"
    fi
}

# Append the SASL_SSL listener settings to the broker and admin client configs.
# The broker logs in to itself with SCRAM-SHA-512 as the first user. The PLAIN
# mechanism checks passwords against the user_NAME options of its JAAS entry.
write_security_configs() {
    local admin="${SASL_USER_NAMES[0]}" admin_password="${SASL_USER_PASSWORDS[0]}"
    local plain_users="" i
    for i in "${!SASL_USER_NAMES[@]}"; do
        plain_users+=" user_${SASL_USER_NAMES[$i]}=\"${SASL_USER_PASSWORDS[$i]}\""
    done
    local truststore_settings="ssl.truststore.location=$LOCAL_KAFKA_SSL_TRUSTSTORE
ssl.truststore.type=PKCS12
ssl.truststore.password=$LOCAL_KAFKA_SSL_PASSWORD"

    cat >>"$SERVER_CONFIG" <<EOF

# LOCAL_KAFKA_SECURITY=sasl_ssl
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$admin" password="$admin_password"$plain_users;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin" password="$admin_password";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin" password="$admin_password";
ssl.keystore.location=$LOCAL_KAFKA_SSL_KEYSTORE
ssl.keystore.type=PKCS12
ssl.keystore.password=$LOCAL_KAFKA_SSL_PASSWORD
ssl.key.password=$LOCAL_KAFKA_SSL_PASSWORD
$truststore_settings
ssl.client.auth=none
EOF

    cat >>"$ADMIN_CONFIG" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin" password="$admin_password";
$truststore_settings
EOF
}

format_storage() {
    [[ -f "$LOG_DIRS/meta.properties" ]] && return 0

    local cluster_id scram_options=() i mechanism
    for i in "${!SASL_USER_NAMES[@]}"; do
        for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
            scram_options+=(--add-scram "$mechanism=[name=${SASL_USER_NAMES[$i]},password=${SASL_USER_PASSWORDS[$i]}]")
        done
    done
    cluster_id="$(run_tool kafka.tools.StorageTool random-uuid)"
    log "formatting $LOG_DIRS with cluster id $cluster_id"
    if ! run_tool kafka.tools.StorageTool format \
        --cluster-id "$cluster_id" --config "$SERVER_CONFIG" "${scram_options[@]}" \
        >"$DATA_DIR/format.out" 2>&1; then
        cat "$DATA_DIR/format.out" >&2
        die "formatting $LOG_DIRS failed (output above, log in $DATA_DIR/tools.log)"
    fi
}

cluster_id() {
    sed -n 's/^cluster\.id=//p' "$LOG_DIRS/meta.properties"
}

show_log_tail() {
    local file
    for file in "$CONSOLE_LOG" "$DATA_DIR/server.log"; do
        if [[ -s "$file" ]]; then
            log "last lines of $file:"
            tail -n 20 "$file" >&2
        fi
    done
}

# Wait until the broker returns this data folder's cluster id to an admin
# client. An open TCP port is not enough, because the broker binds its listener
# before it has caught up with the metadata log and can serve requests.
# Comparing the cluster id also proves that the response comes from this broker
# and not from another process on the same port.
wait_until_ready() {
    local pid expected_id deadline output
    pid="$(broker_pid)"
    expected_id="$(cluster_id)"
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        # Only liveness is checked here, because right after the launch the pid
        # can still show the shell's command line until nohup and setsid exec java.
        if ! process_alive "$pid"; then
            show_log_tail
            die "the broker process exited during start-up"
        fi
        if port_open "$PORT"; then
            output="$(run_tool org.apache.kafka.tools.ClusterTool cluster-id \
                --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" 2>&1)" || true
            if [[ "$output" == *"Cluster ID: $expected_id"* ]]; then
                return 0
            fi
        fi
        sleep 1
    done
    return 1
}

cmd_start() {
    if broker_running; then
        log "already running (pid $(broker_pid))"
        if ! wait_until_ready; then
            die "the broker (pid $(broker_pid)) is running but did not serve requests on $BOOTSTRAP within ${START_TIMEOUT}s"
        fi
        echo "$BOOTSTRAP"
        return 0
    fi
    rm -f "$PID_FILE"

    local port
    for port in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$port"; then
            die "port $port on $HOST is already in use by another process; set LOCAL_KAFKA_PORT (and LOCAL_KAFKA_CONTROLLER_PORT) to free ports"
        fi
    done

    fetch_jars
    write_configs
    format_storage

    # setsid puts the broker in its own session, so a Ctrl-C or a signal sent
    # to the caller's process group does not reach it. A script runs without
    # job control, so the background job is not a process group leader, setsid
    # does not fork, and $! is the JVM's pid. "9>&-" closes the lock file
    # descriptor (see take_lock), or the broker would hold the lock for life.
    local launcher=()
    if command -v setsid >/dev/null; then
        launcher=(setsid)
    fi
    local started=$SECONDS
    # tests/kafka_broker.py looks for "local-kafka: starting Kafka" on stderr
    # to learn that this call launched the broker and should stop it later.
    log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller port $CONTROLLER_PORT, data $DATA_DIR)"
    # shellcheck disable=SC2086  # HEAP_OPTS holds several JVM options.
    nohup "${launcher[@]}" "$JAVA" $HEAP_OPTS \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" \
        -Dkafka.logs.dir="$DATA_DIR" \
        -Dlocal.kafka.log.file=server.log \
        -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_CONFIG" \
        >"$CONSOLE_LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$PID_FILE"

    if ! wait_until_ready; then
        show_log_tail
        if process_alive "$(broker_pid)"; then
            log "stopping the broker because it did not become ready"
            stop_broker
        fi
        die "the broker did not serve requests on $BOOTSTRAP within ${START_TIMEOUT}s (logs in $DATA_DIR)"
    fi
    if ! broker_running; then
        die "the broker responds on $BOOTSTRAP, but pid $(broker_pid) in $PID_FILE is not its JVM, so stop cannot find it"
    fi
    log "broker ready after $((SECONDS - started))s (pid $(broker_pid))"
    echo "$BOOTSTRAP"
}

stop_broker() {
    local pid deadline
    pid="$(broker_pid)"
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while process_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "the broker (pid $pid) did not exit within ${STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while process_alive "$pid"; do
                sleep 0.2
            done
            break
        fi
        sleep 0.2
    done
    rm -f "$PID_FILE"
}

cmd_stop() {
    if ! broker_running; then
        rm -f "$PID_FILE"
        log "no broker started by this script is running for port $PORT"
        return 0
    fi
    stop_broker
    log "stopped"
}

cmd_status() {
    if broker_running; then
        echo "running (pid $(broker_pid), $BOOTSTRAP)"
        return 0
    fi
    echo "stopped"
    return 3
}

# Serialise start and stop for one data folder, so that two concurrent starts
# do not format or launch the same broker twice. flock is part of util-linux.
# Where it is missing, the commands run without the lock.
take_lock() {
    mkdir -p "$DATA_DIR"
    if command -v flock >/dev/null; then
        exec 9>"$DATA_DIR/local-kafka.lock"
        flock 9
    fi
}

main() {
    [[ $# -eq 1 || ($# -ge 2 && "$1" == tool) ]] || usage
    configure

    case "$1" in
        start)
            JAVA="$(find_java)"
            take_lock
            cmd_start
            ;;
        stop)
            take_lock
            cmd_stop
            ;;
        status)
            cmd_status
            ;;
        tool)
            JAVA="$(find_java)"
            [[ -f "$LIBS_DIR/.complete" ]] || die "the Kafka jars are not in $LIBS_DIR yet: run start once"
            mkdir -p "$DATA_DIR"
            shift
            run_tool "$@"
            ;;
        *)
            usage
            ;;
    esac
}

main "$@"
