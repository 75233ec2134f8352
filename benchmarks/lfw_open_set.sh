#!/usr/bin/env bash
# Open-set identification on ../shared/faces/lfw_dev, k=3, each base with and without its head,
# plus LFW pairs (10-fold verification).
#
# 1. Calibration, on the *train* half (the people the shipped heads were trained on): the
#    threshold that names at most 5% of strangers is `oracle_threshold_5pct` in
#    benchmarks/results/lfw_calibration_train_<backbone>.json; a base's default threshold
#    without a head (facerec/embed.py) is that value rounded up to 4 decimals. (A head's
#    threshold comes from train-head's cross-fitting and is stored in its JSON; with a head
#    trained on the train half, this step measures training people, so CALIBRATE=0 there.)
# 2. Report, on the *test* half (people never used for training or calibration), at the
#    default thresholds: benchmarks/results/lfw_open_set_<backbone>.json.
# Tables go to stderr. CALIBRATE=0 skips step 1; FACEREC=.venv/bin/facerec skips run.sh's set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/faces/lfw_dev}
FACEREC=${FACEREC:-./run.sh facerec}
mkdir -p benchmarks/results
uptime >&2
for b in ${BACKBONES:-face-resnet resnet50}; do
  if [ "${CALIBRATE:-1}" != 0 ]; then
    $FACEREC eval "$DATA" --split train -k 3 --backbones "$b" --compare-heads \
      --json "benchmarks/results/lfw_calibration_train_$b.json" -q > /dev/null
  fi
  $FACEREC eval "$DATA" --split test -k 3 --pairs "$DATA/../lfw_dev_pairs.txt" \
    --backbones "$b" --compare-heads --json "benchmarks/results/lfw_open_set_$b.json" -q > /dev/null
done
uptime >&2
