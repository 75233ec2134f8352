#!/usr/bin/env bash
# Open-set identification on the *test* half of ../shared/faces/lfw_dev (people the
# shipped heads never saw), k=3, every base with and without its head, plus LFW pairs.
# Writes benchmarks/results/lfw_open_set.json; the table goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/faces/lfw_dev}
mkdir -p benchmarks/results
./run.sh facerec eval "$DATA" --split test -k 3 --pairs "$DATA/../lfw_dev_pairs.txt" \
  --backbones ${BACKBONES:-face-resnet resnet50} --compare-heads --json benchmarks/results/lfw_open_set.json -q
