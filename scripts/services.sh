#!/usr/bin/env bash
# shellcheck disable=SC2016  # the bash -c probe scripts take their arguments as $0, $1, ...
# Local services for herald's tests (DESIGN.md section 9).
#
#   scripts/services.sh up [NAME...]       install (Debian packages) and start, wait until they answer
#   scripts/services.sh down [NAME...]     stop what this script started
#   scripts/services.sh status [NAME...]   one line per service; exit 1 if any is down
#   scripts/services.sh restart NAME...    stop and start again, keeping data
#
# NAME is one of: postgres redis rabbitmq nats kafka (default: all of them).
#
# Everything listens on 127.0.0.1 only:
#   postgres  5432  postgresql://herald:herald@127.0.0.1:5432/herald (superuser herald)
#   redis     6379  redis://127.0.0.1:6379/0
#   rabbitmq  5672  amqp://guest:guest@127.0.0.1:5672/
#   nats      4222  nats://127.0.0.1:4222 (JetStream on)
#   kafka     9092  127.0.0.1:9092 (KRaft, single node; controller on 9093)
#
# Data and logs live in .services/<name>/ (override with HERALD_SERVICES_DIR); a log
# over 50 MB becomes <name>.log.1 when its service starts again.
# Kafka's jars come from Maven Central via scripts/kafka/pom.xml and are cached
# in ~/.cache/herald (override with HERALD_CACHE_DIR). Per-service start timeout:
# HERALD_SERVICES_TIMEOUT seconds (defaults: 30 redis/nats, 60 postgres, 120 kafka/rabbitmq).
# docker-compose.yml offers the same services for people with Docker.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
SVC_DIR=${HERALD_SERVICES_DIR:-$ROOT/.services}
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE_DIR=${HERALD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/herald}
HOST=127.0.0.1
ALL_SERVICES=(postgres redis rabbitmq nats kafka)

declare -A PORT=([postgres]=5432 [redis]=6379 [rabbitmq]=5672 [nats]=4222 [kafka]=9092)
declare -A URL=(
  [postgres]="postgresql://herald:herald@$HOST:5432/herald"
  [redis]="redis://$HOST:6379/0"
  [rabbitmq]="amqp://guest:guest@$HOST:5672/"
  [nats]="nats://$HOST:4222"
  [kafka]="$HOST:9092"
)
declare -A TIMEOUT=([postgres]=60 [redis]=30 [rabbitmq]=120 [nats]=30 [kafka]=120)

KAFKA_CLUSTER_ID=MkU3OEVBNTcwNTJENDM2Qk   # any 16 bytes, base64url; fixed so data survives
RABBIT_NODE=herald@localhost

# ----------------------------------------------------------------- helpers

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: warning: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/[.,]/}"; }            # microseconds
since() { local d=$(( $(now) - $1 )); printf '%d.%02ds' $((d / 1000000)) $((d % 1000000 / 10000)); }
relpath() { local p=$1; [[ $p == "$ROOT"/* ]] && p=${p#"$ROOT"/}; printf '%s' "$p"; }

svc_home() { printf '%s/%s' "$SVC_DIR" "$1"; }
log_file() { printf '%s/%s/%s.log' "$SVC_DIR" "$1" "$1"; }

show_log_tail() {
  local log=$1
  if [[ -s $log ]]; then
    printf '  --- last lines of %s ---\n' "$(relpath "$log")" >&2
    tail -n 25 "$log" | sed 's/^/  | /' >&2
  fi
}

canonical() {
  case $1 in
    postgres|postgresql|pg) echo postgres ;;
    redis) echo redis ;;
    rabbitmq|rabbit|amqp) echo rabbitmq ;;
    nats|jetstream) echo nats ;;
    kafka) echo kafka ;;
    *) die "unknown service '$1' (known: ${ALL_SERVICES[*]})" ;;
  esac
}

# Run a command as the postgres user when we are root (postgres refuses root).
as_pg() {
  if (( EUID == 0 )); then
    (cd / && exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@")
  else
    (cd / && exec "$@")
  fi
}

# A pid that is alive and whose command line matches a pattern.
pid_matches() {
  local pid=$1 pattern=$2 cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *$pattern* ]]
}

# Alive = exists and is not a zombie (orphans are reaped by whatever runs as
# pid 1, which in some containers is slow to do it or never does).
pid_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

read_pid() { [[ -r $1 ]] && head -n 1 "$1" 2>/dev/null | tr -d '[:space:]'; }

# Start a command detached (own session, no stdin, output appended to the
# service log, our lock fd closed) and record its pid.
launch() {
  local name=$1; shift
  local log; log=$(log_file "$name")
  # One older log is kept: a service started again and again must not fill the disk.
  if [[ -f $log ]] && (( $(stat -c %s "$log") > 50 * 1024 * 1024 )); then
    mv -f "$log" "$log.1"
  fi
  printf '\n=== %s: starting %s\n' "$(date '+%F %T')" "$name" >>"$log"
  setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  echo $! >"$(svc_home "$name")/$name.pid"
}

# ------------------------------------------------------------------ probes
# Each probe speaks a little of the service's own protocol, needs nothing but
# bash, and gives up after a couple of seconds.

tcp_exchange() {   # port, bytes to send (printf format), bytes to read -> hex on stdout
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "$2" >&3 && head -c "$3" <&3' \
    "$HOST" "$1" "$2" "$3" 2>/dev/null | od -An -v -tx1 | tr -d ' \n' || true
}

probe_postgres() {
  local bin
  if bin=$(pg_bindir 2>/dev/null) && [[ -x $bin/pg_isready ]]; then
    "$bin/pg_isready" -q -h "$HOST" -p "${PORT[postgres]}" -t 2
  else   # SSLRequest: the server answers 'S' or 'N'
    local hex; hex=$(tcp_exchange "${PORT[postgres]}" '\x00\x00\x00\x08\x04\xd2\x16\x2f' 1)
    [[ $hex == 4e || $hex == 53 ]]
  fi
}

probe_redis() {   # PING -> +PONG (a loading server answers -LOADING)
  [[ $(tcp_exchange "${PORT[redis]}" 'PING\r\n' 5) == 2b504f4e47 ]]
}

probe_rabbitmq() {   # AMQP 0-9-1 header -> method frame connection.start (class 10, method 10)
  local hex; hex=$(tcp_exchange "${PORT[rabbitmq]}" 'AMQP\x00\x00\x09\x01' 11)
  [[ $hex == 010000????????000a000a ]]
}

probe_nats() {   # the server greets with INFO {...}; JetStream must be on
  local line
  line=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && head -n 1 <&3' "$HOST" "${PORT[nats]}" 2>/dev/null) || return 1
  [[ $line == INFO* && $line == *'"jetstream":true'* ]]
}

probe_kafka() {   # ApiVersions v0, correlation id 42 -> same id, error code 0
  local hex
  hex=$(tcp_exchange "${PORT[kafka]}" '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x2a\xff\xff' 10)
  [[ $hex == ????????0000002a0000 ]]
}

probe() { "probe_$1"; }

port_taken() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null; }

# ----------------------------------------------------- ownership (our pids)

pg_data() { printf '%s/data' "$(svc_home postgres)"; }

our_pid() {   # prints the pid of the instance this script started, if alive
  local name=$1 pid
  case $name in
    postgres) pid=$(read_pid "$(pg_data)/postmaster.pid") && pid_matches "$pid" postgres ;;
    redis)    pid=$(read_pid "$(svc_home redis)/redis.pid") && pid_matches "$pid" redis-server ;;
    rabbitmq) pid=$(read_pid "$(svc_home rabbitmq)/rabbitmq.pid") && pid_matches "$pid" rabbitmq-server ;;
    nats)     pid=$(read_pid "$(svc_home nats)/nats.pid") && pid_matches "$pid" nats-server ;;
    kafka)    pid=$(read_pid "$(svc_home kafka)/kafka.pid") && pid_matches "$pid" kafka.Kafka ;;
  esac || return 1
  printf '%s' "$pid"
}

# ------------------------------------------------------------- installing

pg_bindir() {
  local d best
  if [[ -r $(pg_data)/PG_VERSION ]]; then   # an existing cluster needs its own major version
    d=/usr/lib/postgresql/$(cat "$(pg_data)/PG_VERSION")/bin
    [[ -x $d/postgres ]] && { printf '%s' "$d"; return 0; }
  fi
  best=$(for d in /usr/lib/postgresql/*/bin; do [[ -x $d/initdb ]] && printf '%s\n' "$d"; done | sort -V | tail -n 1)
  [[ -n $best ]] && printf '%s' "$best"
}

RABBIT_BIN=/usr/lib/rabbitmq/bin   # the real scripts; /usr/sbin/rabbitmq-* insist on the rabbitmq user

kafka_libs_dir() {
  local hash
  hash=$(sha256sum <"$SCRIPT_DIR/kafka/pom.xml" | cut -c1-12)
  printf '%s/kafka-%s/libs' "$CACHE_DIR" "$hash"
}

missing_packages() {   # Debian packages needed by the given services and not yet installed
  local name
  for name in "$@"; do
    case $name in
      postgres) pg_bindir >/dev/null || echo postgresql ;;
      redis)    command -v redis-server >/dev/null || echo redis-server ;;
      rabbitmq) [[ -x $RABBIT_BIN/rabbitmq-server ]] || echo rabbitmq-server ;;
      nats)     command -v nats-server >/dev/null || echo nats-server ;;
      kafka)
        command -v java >/dev/null || echo openjdk-17-jre-headless
        if [[ ! -e $(dirname "$(kafka_libs_dir)")/.complete ]]; then
          command -v mvn >/dev/null || echo maven
        fi ;;
    esac
  done
}

apt_install() {
  local pkgs=("$@") created_policy=
  local sudo=()
  if (( EUID != 0 )); then
    if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
      die "need root to install: ${pkgs[*]} (run: sudo apt-get install ${pkgs[*]})"
    fi
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${pkgs[*]}"
  # Keep the packages' own system services (postgresql@15-main, redis-server,
  # rabbitmq-server, ...) from starting and taking our ports while installing.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  say "installing Debian packages: ${pkgs[*]}"
  local rc=0
  {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update -o Dpkg::Use-Pty=0 >/dev/null &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
      -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${pkgs[@]}" >"$SVC_DIR/apt.log" 2>&1
  } || rc=$?
  [[ -n $created_policy ]] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  if (( rc != 0 )); then
    show_log_tail "$SVC_DIR/apt.log"
    die "apt-get failed installing ${pkgs[*]} (full output: $(relpath "$SVC_DIR/apt.log"))"
  fi
}

fetch_kafka_libs() {
  local libs cache tmp t0
  libs=$(kafka_libs_dir); cache=$(dirname "$libs")
  [[ -e $cache/.complete ]] && return 0
  command -v mvn >/dev/null || die "kafka: mvn not found"
  t0=$(now)
  say "kafka: fetching jars from Maven Central into $cache (once)"
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/libs.tmp.XXXXXX")
  if ! mvn -q -B -ntp -f "$SCRIPT_DIR/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$cache/mvn.log" 2>&1; then
    rm -rf "$tmp"
    show_log_tail "$cache/mvn.log"
    die "kafka: mvn dependency:copy-dependencies failed (full output: $cache/mvn.log)"
  fi
  rm -rf "$libs"; mv "$tmp" "$libs"
  touch "$cache/.complete"
  say "kafka: $(find "$libs" -name '*.jar' | wc -l) jars fetched in $(since "$t0")"
}

# -------------------------------------------------------- starting, per service

start_postgres() {
  local dir data bin pw
  dir=$(svc_home postgres); data=$(pg_data)
  bin=$(pg_bindir) || die "postgres: no /usr/lib/postgresql/*/bin/initdb"
  if (( EUID == 0 )); then
    id postgres >/dev/null 2>&1 || die "postgres: no 'postgres' user (is the postgresql package installed?)"
    mkdir -p "$data"; chown postgres:postgres "$data"; chmod 700 "$data"
    as_pg test -w "$data" || die "postgres: the postgres user cannot reach $data (a parent directory is not searchable by others); set HERALD_SERVICES_DIR to a directory it can reach"
  else
    mkdir -p "$data"; chmod 700 "$data"
  fi
  if [[ ! -s $data/PG_VERSION ]]; then
    say "postgres: initdb $(relpath "$data")"
    pw=$dir/.pwfile; printf 'herald\n' >"$pw"
    (( EUID == 0 )) && chown postgres "$pw"
    if ! as_pg "$bin/initdb" -D "$data" -U herald --pwfile="$pw" -E UTF8 --locale=C.UTF-8 \
          --auth-local=trust --auth-host=scram-sha-256 >>"$(log_file postgres)" 2>&1; then
      rm -f "$pw"; show_log_tail "$(log_file postgres)"; die "postgres: initdb failed"
    fi
    rm -f "$pw"
    cat >>"$data/postgresql.conf" <<'EOF'

# --- herald test settings (scripts/services.sh)
listen_addresses = '127.0.0.1'
port = 5432
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    cat >"$data/pg_hba.conf" <<'EOF'
# herald test cluster: TCP on loopback only, password (scram-sha-256)
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
EOF
  fi
  # After a crash the lock file can name a postmaster that is gone, or a zombie
  # nobody has reaped yet; postgres itself would refuse to start over the latter.
  # (It still refuses if an old shared memory block is in use.)
  local old; old=$(read_pid "$data/postmaster.pid") || true
  if [[ -n $old ]] && ! pid_alive "$old"; then
    rm -f "$data/postmaster.pid"
  fi
  if (( EUID == 0 )); then
    launch postgres setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" -D "$data"
  else
    launch postgres "$bin/postgres" -D "$data"
  fi
}

after_postgres() {   # the herald database (the role herald is the cluster's superuser)
  local bin; bin=$(pg_bindir)
  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "${PORT[postgres]}" -U herald)
  if [[ $(PGPASSWORD=herald PGCONNECT_TIMEOUT=5 "${psql[@]}" -d postgres -tAc \
          "select 1 from pg_database where datname = 'herald'" 2>>"$(log_file postgres)") != 1 ]]; then
    PGPASSWORD=herald "${psql[@]}" -d postgres -c 'create database herald owner herald' \
      >>"$(log_file postgres)" 2>&1 || die "postgres: could not create database herald (see $(relpath "$(log_file postgres)"))"
  fi
}

start_redis() {
  local dir; dir=$(svc_home redis)
  mkdir -p "$dir/data"
  launch redis redis-server --bind "$HOST" --port "${PORT[redis]}" --protected-mode yes \
    --daemonize no --dir "$dir/data" --appendonly yes --save '' \
    --loglevel notice --databases 16
}

rabbit_env() {   # environment for rabbitmq-server and its CLI tools (the cookie lives in HOME)
  local dir; dir=$(svc_home rabbitmq)
  RABBIT_ENV=(
    HOME="$dir/home"
    RABBITMQ_NODENAME="$RABBIT_NODE"
    RABBITMQ_NODE_IP_ADDRESS="$HOST"
    RABBITMQ_NODE_PORT="${PORT[rabbitmq]}"
    RABBITMQ_DIST_PORT=25672
    ERL_EPMD_ADDRESS="$HOST"
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$dir/mnesia"
    RABBITMQ_LOG_BASE="$dir/log"
    RABBITMQ_LOGS=-
    RABBITMQ_PID_FILE="$dir/beam.pid"
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
  )
}

start_rabbitmq() {
  local dir; dir=$(svc_home rabbitmq)
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  cat >"$dir/rabbitmq.conf" <<EOF
# written by scripts/services.sh
listeners.tcp.default = $HOST:${PORT[rabbitmq]}
loopback_users.guest = true
log.console = true
log.console.level = info
log.file = false
EOF
  [[ -e $dir/enabled_plugins ]] || echo '[].' >"$dir/enabled_plugins"
  rabbit_env
  launch rabbitmq env "${RABBIT_ENV[@]}" "$RABBIT_BIN/rabbitmq-server"
}

start_nats() {
  local dir; dir=$(svc_home nats)
  mkdir -p "$dir/data"
  # max_payload has no command-line flag. The default (1 MiB) is too small for
  # a 1 MiB event plus its headers (conformance case 15): raise it to 8 MiB,
  # the largest size NATS recommends.
  printf '# written by scripts/services.sh\nmax_payload: 8MB\n' >"$dir/nats.conf"
  launch nats nats-server -c "$dir/nats.conf" -js -a "$HOST" -p "${PORT[nats]}" -sd "$dir/data" -n herald
}

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n 1
}

start_kafka() {
  local dir libs major
  dir=$(svc_home kafka); libs=$(kafka_libs_dir)
  major=$(java_major)
  if [[ -z $major ]] || (( major < 17 )); then
    die "kafka: needs Java 17 or newer (found: $(java -version 2>&1 | head -n 1))"
  fi
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# written by scripts/services.sh -- single-node KRaft broker for tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:9093
listeners=PLAINTEXT://$HOST:${PORT[kafka]},CONTROLLER://$HOST:9093
advertised.listeners=PLAINTEXT://$HOST:${PORT[kafka]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
offsets.topic.segment.bytes=4194304
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
EOF
  # offsets.topic.segment.bytes (4 MiB, not 100): the commits of test runs are
  # compacted as they go. With 100 MiB a day of runs left 600 MB of them, which a
  # restarted broker took 3 s to load (0.1 s now). It applies when the offsets
  # topic is made, in a new data directory.
  local jvm=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
             -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
             "-Dlog4j2.configurationFile=$SCRIPT_DIR/kafka/log4j2.properties"
             "-Dkafka.logs.dir=$dir" -cp "$libs/*")
  if [[ ! -s $dir/data/meta.properties ]]; then
    say "kafka: formatting $(relpath "$dir/data")"
    "${jvm[@]}" kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" \
      --ignore-formatted >>"$(log_file kafka)" 2>&1 9>&- \
      || { show_log_tail "$(log_file kafka)"; die "kafka: StorageTool format failed"; }
  fi
  launch kafka "${jvm[@]}" kafka.Kafka "$dir/server.properties"
}

# ---------------------------------------------------------- stopping

stop_one() {
  local name=$1 pid sig=TERM limit=60 waited=0
  pid=$(our_pid "$name") || {
    if probe "$name"; then
      say "$name: $HOST:${PORT[$name]} answers but was not started by this script; leaving it"
    fi
    return 0
  }
  case $name in
    postgres) sig=INT ;;        # fast shutdown: disconnect clients, checkpoint, exit
  esac
  local t0; t0=$(now)
  kill -s "$sig" "$pid" 2>/dev/null || true
  while pid_alive "$pid"; do
    if (( waited >= limit * 10 )); then
      warn "$name (pid $pid) did not stop within ${limit}s; killing it"
      kill -s KILL "$pid" 2>/dev/null || true
      [[ $name == rabbitmq ]] && kill_beam
      sleep 0.5
      break
    fi
    sleep 0.1; waited=$((waited + 1))
  done
  if [[ $name == rabbitmq ]]; then
    # epmd is started by the Erlang VM; stop it too when no Erlang node is left.
    if command -v epmd >/dev/null && ! ERL_EPMD_ADDRESS=$HOST epmd -names 2>/dev/null | grep -q '^name '; then
      ERL_EPMD_ADDRESS=$HOST epmd -kill >/dev/null 2>&1 || true
    fi
  fi
  rm -f "$(svc_home "$name")/$name.pid"
  say "$name: stopped ($(since "$t0"))"
}

kill_beam() {   # the VM behind a rabbitmq-server wrapper we had to SIGKILL
  local pid; pid=$(read_pid "$(svc_home rabbitmq)/beam.pid") || return 0
  pid_matches "$pid" beam && kill -s KILL "$pid" 2>/dev/null || true
}

# ------------------------------------------------------------- commands

wait_up() {
  local name=$1 t0=$2 limit deadline
  limit=${HERALD_SERVICES_TIMEOUT:-${TIMEOUT[$name]}}
  deadline=$(( t0 + limit * 1000000 ))
  until probe "$name"; do
    if ! our_pid "$name" >/dev/null; then
      sleep 0.3   # postgres writes its pid file a moment after starting
      if ! our_pid "$name" >/dev/null && ! probe "$name"; then
        show_log_tail "$(log_file "$name")"
        die "$name exited while starting; see $(relpath "$(log_file "$name")")"
      fi
    fi
    if (( $(now) > deadline )); then
      show_log_tail "$(log_file "$name")"
      die "$name did not answer on $HOST:${PORT[$name]} within ${limit}s; see $(relpath "$(log_file "$name")")"
    fi
    sleep 0.2
  done
}

cmd_up() {
  local t_all name missing
  t_all=$(now)
  local need=()
  for name in "$@"; do
    if probe "$name"; then
      if our_pid "$name" >/dev/null; then
        say "$name: up ($HOST:${PORT[$name]})"
      else
        say "$name: $HOST:${PORT[$name]} already answers (not started by this script); using it"
      fi
    else
      need+=("$name")
    fi
  done
  (( ${#need[@]} )) || { say "all up ($(since "$t_all"))"; return 0; }

  mapfile -t missing < <(missing_packages "${need[@]}" | sort -u)
  if (( ${#missing[@]} )); then apt_install "${missing[@]}"; fi
  for name in "${need[@]}"; do
    if [[ $name == kafka ]]; then fetch_kafka_libs; fi
  done

  declare -A started_at=()
  for name in "${need[@]}"; do
    mkdir -p "$(svc_home "$name")"
    started_at[$name]=$(now)
    if our_pid "$name" >/dev/null; then
      say "$name: process running but not answering yet; waiting"
    elif port_taken "${PORT[$name]}"; then
      die "$name: $HOST:${PORT[$name]} is taken by another program that does not answer like $name"
    else
      say "$name: starting on $HOST:${PORT[$name]}"
      "start_$name"
    fi
  done
  for name in "${need[@]}"; do
    wait_up "$name" "${started_at[$name]}"
    if [[ $name == postgres ]]; then after_postgres; fi
    say "$name: up ($HOST:${PORT[$name]}, $(since "${started_at[$name]}"))"
  done
  say "all up ($(since "$t_all"))"
}

cmd_down() {
  local i name
  for (( i = $# ; i >= 1 ; i-- )); do
    name=${!i}
    if our_pid "$name" >/dev/null; then
      stop_one "$name"
    elif probe "$name"; then
      say "$name: $HOST:${PORT[$name]} answers but was not started by this script; leaving it"
    else
      say "$name: not running"
    fi
  done
}

cmd_restart() {
  local name
  for name in "$@"; do
    if ! our_pid "$name" >/dev/null && probe "$name"; then
      die "$name: $HOST:${PORT[$name]} is served by something this script did not start; cannot restart it"
    fi
  done
  for name in "$@"; do stop_one "$name"; done
  cmd_up "$@"
}

cmd_status() {
  local name pid state rc=0 extra
  for name in "$@"; do
    extra=
    if probe "$name"; then
      state=up
      if pid=$(our_pid "$name"); then extra="pid $pid"; else extra="external"; fi
      extra="$extra  ${URL[$name]}"
    else
      state=down; rc=1
      if pid=$(our_pid "$name"); then extra="pid $pid, not answering; see $(relpath "$(log_file "$name")")"; fi
    fi
    local line; line=$(printf '%-9s %-5s %s:%-5s %s' "$name" "$state" "$HOST" "${PORT[$name]}" "$extra")
    printf '%s\n' "${line%"${line##*[! ]}"}"
  done
  return $rc
}

usage() {
  sed -n '3,/^set /{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

main() {
  local cmd=${1:-}
  [[ -n $cmd ]] || usage
  shift
  local names=() n
  for n in "$@"; do names+=("$(canonical "$n")"); done
  (( ${#names[@]} )) || names=("${ALL_SERVICES[@]}")
  case $cmd in
    up|down|restart)
      [[ $cmd == restart && $# -eq 0 ]] && die "restart needs a service name (${ALL_SERVICES[*]})"
      mkdir -p "$SVC_DIR"
      exec 9>>"$SVC_DIR/.lock"
      flock -w 900 9 || die "another services.sh is still running (lock $SVC_DIR/.lock)"
      "cmd_$cmd" "${names[@]}"
      ;;
    status) cmd_status "${names[@]}" ;;
    -h|--help|help) usage 0 ;;
    *) usage ;;
  esac
}

main "$@"
