#!/usr/bin/env bash
# On the lent GPU machine (no internet, Python 3.12, torch/transformers in its image), from the repo root:
#   [LIMIT=seconds] bash .ci/device/run.sh [--models] NB [--set NAME=VALUE ...] [--skip-part NAME ...]
# installs the carried wheels (.whl/) once, with --models reassembles the shipped GGUFs (.ship/) and
# dequantises them into .cache/models, runs `headlab run --profile gpu NB`, and leaves in $OUT the run's
# log and a tarball of figures/<paper>/gpu (files come back from $OUT only). See README, "GPU runs".
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ ! -f /tmp/site/.headlab-wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed (carry .whl: make device-bundle)"; exit 3; }
  touch /tmp/site/.headlab-wheels
fi
export PYTHONPATH=/tmp/site:$PWD/lib PYTHONUNBUFFERED=1 MPLBACKEND=Agg TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "${1:-}" = "--models" ]; then
  shift
  python3 -m headlab ship unpack || exit 4
  python3 -m headlab cache $(python3 -c "import json, glob; print(' '.join(json.load(open(f))['name'] for f in sorted(glob.glob('.ship/*.json'))))") || exit 4
fi
nb=${1:?usage: run.sh [--models] NB [--set NAME=VALUE ...] [--skip-part NAME ...]}
shift
paper=$(python3 -c "from headlab.profiles import NOTEBOOKS; print(NOTEBOOKS['$nb'].paper)") || exit 2
# the log goes to a file, not through a pipe: orphaned kernel processes can hold a pipe open past `timeout`
timeout -k 10 "${LIMIT:-$((585 - SECONDS))}" python3 -m headlab run --profile gpu "$nb" "$@" > "$OUT/$nb.log" 2>&1
rc=$?
tail -n 12 "$OUT/$nb.log"
tar czf "$OUT/$paper-gpu.tgz" "figures/$paper/gpu" && ls -l "$OUT"
echo "$nb rc=$rc"
exit $rc
