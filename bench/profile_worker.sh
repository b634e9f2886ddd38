#!/bin/bash
# The worker under py-spy, for bench/run.py's --ours-cmd (compiled frames included: --native):
#   python bench/run.py --events 200000 --customers 20000 --only ours --ours-cmd "$PWD/bench/profile_worker.sh"
# PROFILE_OUT (default /tmp/worker.svg), PROFILE_FORMAT (flamegraph, raw or speedscope), PROFILE_SECONDS (40).
# py-spy samples the worker's process from outside, so the worker stops on bench/run.py's SIGTERM as usual.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${SEGMENTER_BIN:-$here/.venv/bin}"  # where segmenter and py-spy are (pip install -e '.[bench]')
"$bin/segmenter" worker --loglevel warning &
worker=$!
"$bin/py-spy" record --native -r 250 -f "${PROFILE_FORMAT:-flamegraph}" -o "${PROFILE_OUT:-/tmp/worker.svg}" \
  -d "${PROFILE_SECONDS:-40}" --pid "$worker" >&2 &
trap 'kill -TERM $worker' TERM INT
wait "$worker"
wait
