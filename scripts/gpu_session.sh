#!/usr/bin/env bash
# One device call for both prepared GPU jobs, within a deadline: the airbench presets
# (scripts/gpu_airbench.sh), then the serving benchmark (scripts/gpu_bench.sh) on the
# shipped default model, cut off in time to pack its results. Carry .whl and .devdata.
#
#   OUT=$OUT DEADLINE_S=500 bash scripts/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
DEADLINE_S=${DEADLINE_S:-500}
# Each job installs the carried wheels into /tmp/site itself when its modules are
# missing; the second finds them there.
BUDGET_S=${BUDGET_S:-150} bash scripts/gpu_airbench.sh > /tmp/train.log 2>&1
echo "train rc $? after $(( $(date +%s) - started )) s"
left=$(( DEADLINE_S - ($(date +%s) - started) - 15 ))
timeout "$left" bash scripts/gpu_bench.sh /tmp/bench > /tmp/bench.log 2>&1
echo "bench rc $? after $(( $(date +%s) - started )) s"
tar czf "$OUT/bench.tgz" -C /tmp bench bench.log train.log
grep -h "mean ±\|median seed\|compilation\|skipped\|total\|Error" /tmp/train.log
cat /tmp/bench/table.md 2>/dev/null || tail -40 /tmp/bench.log
