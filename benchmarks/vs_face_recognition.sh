#!/usr/bin/env bash
# facerec vs face_recognition on the same photos and protocol: lfw_dev test half, k=3
# open set, plus LFW pairs, and photos/s of each. face_recognition runs in its own venv
# (dlib-bin wheels; the face_recognition package itself is installed --no-deps so pip does
# not build dlib).
set -euo pipefail
cd "$(dirname "$0")/.."
LFW=${LFW:-../shared/faces/lfw_dev}
FRVENV=${FRVENV:-.venv-face_recognition}
mkdir -p benchmarks/results
if [ ! -x "$FRVENV/bin/python" ]; then
  python3 -m venv "$FRVENV"
  "$FRVENV/bin/pip" install -q dlib-bin face_recognition_models pillow numpy click
  "$FRVENV/bin/pip" install -q --no-deps face_recognition
fi
"$FRVENV/bin/python" benchmarks/face_recognition_encode.py "$LFW" benchmarks/results/face_recognition_lfw_test.npz
# facerec, each shipped base with and without its head: benchmarks/results/lfw_open_set_<base>.json
CALIBRATE=0 BACKBONES="face-resnet resnet50" benchmarks/lfw_open_set.sh
for b in face-resnet resnet50; do
  echo -n "$b: "
  FACEREC_BACKBONE=$b .venv/bin/python benchmarks/facerec_speed.py "$LFW" 500 2>/dev/null
done | tee benchmarks/results/facerec_speed.txt
.venv/bin/python benchmarks/face_recognition_score.py benchmarks/results/face_recognition_lfw_test.npz \
  "$LFW/../lfw_dev_pairs.txt" | tee benchmarks/results/face_recognition_lfw_test.json
