#!/usr/bin/env bash
# Open-set identification on the *test* half of ../shared/faces/lfw_dev (people the
# shipped heads never saw), k=3, each base with and without its head, plus LFW pairs.
# Writes benchmarks/results/lfw_open_set_<backbone>.json; the table goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/faces/lfw_dev}
mkdir -p benchmarks/results
for b in ${BACKBONES:-face-resnet resnet50}; do
  ./run.sh facerec eval "$DATA" --split test -k 3 --pairs "$DATA/../lfw_dev_pairs.txt" \
    --backbones "$b" --compare-heads --json "benchmarks/results/lfw_open_set_$b.json" -q > /dev/null
done
