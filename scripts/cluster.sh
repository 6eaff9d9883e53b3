#!/usr/bin/env bash
# cluster.sh -- a local 3-node Conclave cluster on loopback, for trying things out.
#
#   scripts/cluster.sh up       build if needed, start n1..n3 in the background
#   scripts/cluster.sh status   `conclave cluster status` against n1
#   scripts/cluster.sh down     stop them (SIGTERM, then SIGKILL after 10 s)
#   scripts/cluster.sh clean    down, then remove the data directories
#
# Ports: n1 http 2479 / peer 2480, n2 2481/2482, n3 2483/2484 (BASE_PORT=2479 moves
# them). Data and logs: build/cluster/n<i>/ (CLUSTER_DIR changes it); pids in there too.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CONCLAVE_BIN:-$root/build/conclave}
dir=${CLUSTER_DIR:-$root/build/cluster}
base=${BASE_PORT:-2479}

http_port() { echo $((base + 2 * ($1 - 1))); }
peer_port() { echo $((base + 2 * ($1 - 1) + 1)); }

initial_cluster() {
    local ic="" i
    for i in 1 2 3; do ic+="${ic:+,}n$i=127.0.0.1:$(peer_port "$i")"; done
    echo "$ic"
}

running() { [[ -f $dir/n$1/pid ]] && kill -0 "$(cat "$dir/n$1/pid")" 2>/dev/null; }

up() {
    [[ -x $bin ]] || make -C "$root" -s all
    local i
    for i in 1 2 3; do
        if running "$i"; then echo "n$i already running (pid $(cat "$dir/n$i/pid"))"; continue; fi
        mkdir -p "$dir/n$i"
        "$bin" serve --name "n$i" --data-dir "$dir/n$i/data" \
            --http "127.0.0.1:$(http_port "$i")" --peer "127.0.0.1:$(peer_port "$i")" \
            --initial-cluster "$(initial_cluster)" >>"$dir/n$i/log" 2>&1 &
        echo $! >"$dir/n$i/pid"
        echo "n$i: http://127.0.0.1:$(http_port "$i")  (log: $dir/n$i/log)"
    done
    local tries=0
    until curl -sf "http://127.0.0.1:$(http_port 1)/readyz" >/dev/null; do
        tries=$((tries + 1))
        if ((tries > 100)); then echo "no leader after 10 s; see $dir/n*/log" >&2; exit 1; fi
        sleep 0.1
    done
    # every member publishes its HTTP address into the member directory within ~1 s
    tries=0
    while (($(curl -s "http://127.0.0.1:$(http_port 1)/v1/cluster/members" |
        grep -o '"http_addr":"[^"]' | wc -l) < 3)) && ((tries < 50)); do
        sleep 0.1
        tries=$((tries + 1))
    done
    echo "ready. try:"
    echo "  curl -X PUT http://127.0.0.1:$(http_port 2)/v1/kv/hello -d world"
    echo "  curl http://127.0.0.1:$(http_port 3)/v1/kv/hello"
    echo "  $bin cluster status --endpoint 127.0.0.1:$(http_port 1)"
}

down() {
    local i pid waited
    for i in 1 2 3; do
        running "$i" || { rm -f "$dir/n$i/pid"; continue; }
        pid=$(cat "$dir/n$i/pid")
        kill -TERM "$pid"
        waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do sleep 0.1; waited=$((waited + 1)); done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        rm -f "$dir/n$i/pid"
        echo "n$i stopped"
    done
}

case "${1:-}" in
up) up ;;
down) down ;;
status) exec "$bin" cluster status --endpoint "127.0.0.1:$(http_port 1)" ;;
clean) down; rm -rf "$dir"; echo "removed $dir" ;;
*) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
