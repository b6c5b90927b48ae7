#!/usr/bin/env bash
# A short tour of Reservoir on local data: `make demo` runs it after the set-up.
# It starts a local cluster, creates a dataset over a generated directory, looks
# around, and stops everything it started.
set -euo pipefail

work=$(mktemp -d -t reservoir-demo.XXXXXX)
port=$(python -c 'from reservoir.processes import free_port; print(free_port())')
export RESERVOIR_MASTER="127.0.0.1:$port"
up_pid=""

cleanup() {
    if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
        kill -TERM "$up_pid"
        wait "$up_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "Generating a small dataset in $work/data ..."
mkdir -p "$work/data/models/tiny-llm" "$work/data/train"
head -c 48M /dev/urandom > "$work/data/models/tiny-llm/model.safetensors"
printf '{"hidden_size": 64, "layers": 2}\n' > "$work/data/models/tiny-llm/config.json"
for i in 0 1 2 3; do head -c 4M /dev/urandom > "$work/data/train/shard-$i.bin"; done

echo "Starting a local cluster (etcd, a master, two workers) ..."
reservoir up --workers 2 --port "$port" --data-dir "$work/up" > "$work/up.out" 2>&1 &
up_pid=$!
for _ in $(seq 1 900); do
    grep -q "reservoir is up" "$work/up.out" 2>/dev/null && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.out"; exit 1; }
    sleep 0.1
done
grep -q "reservoir is up" "$work/up.out" || { echo "reservoir up did not come up"; cat "$work/up.out"; exit 1; }
cat "$work/up.out"

step reservoir workers
step reservoir dataset create demo --mount "file://$work/data"
step reservoir dataset list
step reservoir ls demo
step reservoir ls demo/models/tiny-llm
step reservoir stat demo/models/tiny-llm/model.safetensors
step reservoir dataset get demo
echo "(a file appears at the origin; sync records it)"
echo "label,text" > "$work/data/train/labels.csv"
step reservoir dataset sync demo

echo
echo "Stopping the cluster ..."
kill -TERM "$up_pid"
wait "$up_pid"
up_pid=""
echo "Done: everything the demo started has stopped."
