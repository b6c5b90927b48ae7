#!/usr/bin/env bash
# A tour of Reservoir: `make demo` runs it after the set-up.
#
# It puts a few hundred MiB of generated "model" data behind an S3-protocol server
# (moto, a separate process), starts a local Reservoir cluster, creates a dataset over
# the bucket, lets eight readers load the same large file at once, and shows what each
# read and how many bytes the origin had to serve. Then it stops everything it started.
set -euo pipefail

work=$(mktemp -d -t reservoir-demo.XXXXXX)
free_port() { python -c 'from reservoir.processes import free_port; print(free_port())'; }
port=$(free_port)
s3_port=$(free_port)
export RESERVOIR_MASTER="127.0.0.1:$port"
s3="http://127.0.0.1:$s3_port"
up_pid="" s3_pid=""
model_mib=${DEMO_MODEL_MIB:-256}
readers=8

stop() {
    for pid in $up_pid $s3_pid; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
    done
    rm -rf "$work"
}
trap stop EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
wait_for() {  # wait_for FILE TEXT PID: until FILE holds TEXT, while PID lives
    for _ in $(seq 1 1200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { cat "$1"; return 1; }
        sleep 0.1
    done
    echo "timed out waiting for: $2"; cat "$1"; return 1
}

echo "Starting an S3-protocol server (moto) at $s3 ..."
moto_server -H 127.0.0.1 -p "$s3_port" > "$work/moto.log" 2>&1 &
s3_pid=$!
wait_for "$work/moto.log" "Running on" "$s3_pid"

echo "Uploading a ${model_mib} MiB model and a few training shards to s3://models ..."
python - "$s3" "$model_mib" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="demo",
                  aws_secret_access_key="demo", region_name="us-east-1")
s3.create_bucket(Bucket="models")
s3.put_object(Bucket="models", Key="tiny-llm/model.safetensors", Body=os.urandom(int(sys.argv[2]) << 20))
s3.put_object(Bucket="models", Key="tiny-llm/config.json", Body=b'{"hidden_size": 64}\n')
for i in range(4):
    s3.put_object(Bucket="models", Key=f"train/shard-{i}.bin", Body=os.urandom(4 << 20))
PY

echo "Starting a local cluster (etcd, a master, two workers) ..."
reservoir up --workers 2 --port "$port" --data-dir "$work/up" > "$work/up.out" 2>&1 &
up_pid=$!
wait_for "$work/up.out" "reservoir is up" "$up_pid"
cat "$work/up.out"

step reservoir workers
step reservoir dataset create models --mount s3://models \
    --option endpoint="$s3" --option access_key_id=demo --option secret_access_key=demo
step reservoir ls models
step reservoir ls models/tiny-llm
step reservoir stat models/tiny-llm/model.safetensors

printf '\n\033[1m%s\033[0m\n' "Eight readers start at once, each loading models/tiny-llm/model.safetensors (cold cache) ..."
for i in $(seq 1 $readers); do
    ( start=$(date +%s.%N)
      sum=$(reservoir cat models/tiny-llm/model.safetensors | tee >(wc -c > "$work/bytes-$i") | sha256sum | cut -c1-16)
      end=$(date +%s.%N)
      echo "$i $sum $start $end" > "$work/reader-$i" ) &
done
wait $(jobs -p | grep -v -e "^$up_pid$" -e "^$s3_pid$") 2>/dev/null || true
python - "$work" "$readers" <<'PY'
import sys, pathlib
work, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
print(f"{'reader':>6}  {'bytes':>12}  {'seconds':>7}  {'MB/s':>7}  sha256 (first 16)")
rows = []
for i in range(1, n + 1):
    _, digest, start, end = (work / f"reader-{i}").read_text().split()
    size = int((work / f"bytes-{i}").read_text())
    took = float(end) - float(start)
    rows.append(digest)
    print(f"{i:>6}  {size:>12}  {took:>7.2f}  {size / took / 1e6:>7.0f}  {digest}")
print("all readers got identical bytes" if len(set(rows)) == 1 else "READERS DISAGREE")
PY
step reservoir dataset get models
echo "(origin read: what the S3 server had to serve for all $readers readers together)"

step reservoir load models train --wait
step reservoir dataset get models

echo
echo "Stopping the cluster and the S3 server ..."
kill -TERM "$up_pid"; wait "$up_pid"; up_pid=""
kill -TERM "$s3_pid"; wait "$s3_pid" || true; s3_pid=""
echo "Done: everything the demo started has stopped."
