#!/usr/bin/env bash
# What exists of the loop today, end to end: the embedded default, the data contract,
# and the real services started natively. Grows with each subcommand.
set -euo pipefail
cd "$(dirname "$0")/.."
F=.venv/bin/fraudctl
HOME_DIR=${DEMO_HOME:-.fraudctl/demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/6 embedded default profile: every backend is local"
$F --home "$HOME_DIR" doctor

step "2/6 a synthetic stream with delayed labels, materialized into the feature store, trained on"
$F --home "$HOME_DIR" produce --count 20000 --rate 0 --label-delay 0 --seed 1
$F --home "$HOME_DIR" produce --duration 3 --rate 500 --label-delay 1 --invalid-rate 0.01
$F --home "$HOME_DIR" materialize
$F --home "$HOME_DIR" materialize --check-freshness
$F --home "$HOME_DIR" features get user-1
echo "-- training on a point-in-time training set; MLflow (sqlite) registers a candidate"
$F --home "$HOME_DIR" train

step "3/6 the data contract: JSON Schema (first lines) and validation"
$F schema > "$HOME_DIR/transaction.schema.json"
head -n 12 "$HOME_DIR/transaction.schema.json"
$F validate examples/transactions.jsonl
set +e
$F validate examples/bad-transactions.jsonl
rc=$?
set -e
if [ "$rc" -ne 4 ]; then echo "expected exit 4 for invalid records, got $rc" >&2; exit 1; fi
echo "(exit 4: a check said no — as expected for the bad file)"

step "4/6 real services without Docker: broker, S3, Redis, MLflow"
trap '$F --profile stack --home "$HOME_DIR" stack down --native >/dev/null || true' EXIT
$F --profile stack --home "$HOME_DIR" stack up --native

step "5/6 doctor against the stack profile"
$F --profile stack --home "$HOME_DIR" doctor
$F --profile stack --home "$HOME_DIR" config show

step "6/6 the same stream through the real broker, S3 and Redis"
$F --profile stack --home "$HOME_DIR" produce --count 20000 --rate 0 --label-delay 0 --seed 1
$F --profile stack --home "$HOME_DIR" materialize
echo "-- rebuilding the online store from the offline snapshots (the recovery path after losing Redis)"
$F --profile stack --home "$HOME_DIR" materialize --backfill 2000-01-01 2100-01-01
$F --profile stack --home "$HOME_DIR" materialize --check-freshness
echo "-- training from the S3 snapshots; the MLflow server stores the run and the model in S3"
$F --profile stack --home "$HOME_DIR" train
