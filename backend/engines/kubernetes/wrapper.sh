#!/bin/sh
# dlaas-tui learner entrypoint (POSIX sh; runs in any framework image).
#
# Prints the GPUs it sees, runs DLAAS_COMMAND in MODEL_DIR under DLAAS_MAX_SECONDS, tees the output
# to the training log, forwards SIGTERM to the command and waits for it, then stores results and
# logs with the uploader the init container left behind, all within the pod's grace period.
# The outcome goes to the termination message as one line of JSON, so the engine learns why a run
# ended even after its logs are gone from the node.
#
# Inputs (env): DLAAS_COMMAND, MODEL_DIR, RESULT_DIR, LOG_DIR, JOB_STATE_DIR, CHECKPOINT_DIR, LEARNER_ID,
#   DLAAS_MAX_SECONDS (0 = no limit), DLAAS_KILL_AFTER (seconds from TERM to KILL, default 10),
#   DLAAS_UPLOADER (an rclone binary; empty = do not store), DLAAS_RESULTS_REMOTE (remote:bucket/run-id),
#   DLAAS_PARAMS_JSON (sweep parameters, written to JOB_STATE_DIR/config.json),
#   DLAAS_TERMINATION_LOG (default /dev/termination-log), DLAAS_NVIDIA_SMI (default nvidia-smi),
#   DLAAS_MEMORY_EVENTS (default /sys/fs/cgroup/memory.events: the container's cgroup v2 OOM counter).
#
# Signals to the engine, none of which costs it an API request per pod:
#   - `$JOB_STATE_DIR/.wrapper/storing` appears when storing begins; the learner's readiness probe
#     tests for it, so the pod turns Ready (with the kubelet's time) exactly then;
#   - the termination message, and the same JSON as `learner-N/status.json` in the results bucket
#     (read when the Job is gone before anyone saw it end).

set -u

: "${MODEL_DIR:=/work/model}" "${RESULT_DIR:=/work/results}" "${LOG_DIR:=/work/logs}"
: "${JOB_STATE_DIR:=/work/state}" "${LEARNER_ID:=0}" "${DLAAS_MAX_SECONDS:=0}" "${DLAAS_KILL_AFTER:=10}"
: "${DLAAS_UPLOADER:=}" "${DLAAS_RESULTS_REMOTE:=}" "${DLAAS_TERMINATION_LOG:=/dev/termination-log}"
: "${DLAAS_NVIDIA_SMI:=nvidia-smi}" "${DLAAS_COMMAND:?DLAAS_COMMAND is not set}"

: "${CHECKPOINT_DIR:=$RESULT_DIR/checkpoints}"
# CHECKPOINT_DIR is inside RESULT_DIR, so storing the results stores the checkpoints too (at the end,
# and when the pod is told to stop), where the next attempt's loader restores them from.
mkdir -p "$RESULT_DIR" "$LOG_DIR" "$JOB_STATE_DIR" "$MODEL_DIR" "$CHECKPOINT_DIR" || exit 70
log="$LOG_DIR/training-log.txt"
: >>"$log"

say() { printf 'dlaas: %s\n' "$*" | tee -a "$log"; }

# The engine reads device UUIDs from this first line, so it is always printed, GPUs or not.
gpus=""
if command -v "$DLAAS_NVIDIA_SMI" >/dev/null 2>&1; then
    gpus=$("$DLAAS_NVIDIA_SMI" --query-gpu=index,uuid,name --format=csv,noheader 2>/dev/null \
        | sed 's/, */,/g' | tr '\n' ';' | sed 's/;$//')
fi
say "gpus: ${gpus:-none}"

if [ -n "${DLAAS_PARAMS_JSON:-}" ]; then
    printf '%s\n' "$DLAAS_PARAMS_JSON" >"$JOB_STATE_DIR/config.json"
fi

flags="$JOB_STATE_DIR/.wrapper"
mkdir -p "$flags"
rm -f "$flags/timed_out" "$flags/terminated" "$flags/storing"

pipe="$flags/out.fifo"
rm -f "$pipe"
mkfifo "$pipe" || exit 70
tee -a "$log" <"$pipe" &
tee_pid=$!

# `sh -c` execs a simple command, so the signal reaches the training process itself; a command
# that starts its own children is expected to forward it (torchrun and most launchers do).
(cd "$MODEL_DIR" && exec sh -c "$DLAAS_COMMAND") >"$pipe" 2>&1 &
child=$!

signal_child() {
    kill "-$1" "$child" 2>/dev/null
}

on_term() {
    interrupted=true
    : >"$flags/terminated"
    signal_child TERM
}
trap on_term TERM INT

# The watchdog polls once a second rather than sleeping the whole span, so it never outlives the
# command by more than a second and holds no output open.
watchdog=""
if [ "$DLAAS_MAX_SECONDS" -gt 0 ] 2>/dev/null; then
    (
        n=0
        while [ "$n" -lt "$DLAAS_MAX_SECONDS" ]; do
            sleep 1
            kill -0 "$child" 2>/dev/null || exit 0
            n=$((n + 1))
        done
        : >"$flags/timed_out"
        signal_child TERM
        n=0
        while [ "$n" -lt "$DLAAS_KILL_AFTER" ]; do
            sleep 1
            kill -0 "$child" 2>/dev/null || exit 0
            n=$((n + 1))
        done
        signal_child KILL
    ) >/dev/null 2>&1 &
    watchdog=$!
fi

# `wait` returns early (>128) when a trapped signal arrives; wait again for the command's own status.
rc=""
while :; do
    interrupted=false
    wait "$child"
    status=$?
    if [ "$interrupted" = false ]; then
        # 127: the status was already collected by an interrupted wait
        if [ "$status" -ne 127 ] || [ -z "$rc" ]; then rc=$status; fi
        break
    fi
    rc=$status
done
trap - TERM INT
[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
# A process the command left behind may hold the pipe open; storing must not wait for it.
i=0
while kill -0 "$tee_pid" 2>/dev/null && [ "$i" -lt 20 ]; do
    sleep 0.1 2>/dev/null || sleep 1
    i=$((i + 1))
done
kill "$tee_pid" 2>/dev/null
wait "$tee_pid" 2>/dev/null
rm -f "$pipe"

timed_out=false
terminated=false
[ -e "$flags/timed_out" ] && timed_out=true
[ -e "$flags/terminated" ] && terminated=true
# Out of memory: CUDA says so in the log, or the kernel's OOM killer counted a kill in this
# container's cgroup. A 137 alone is any SIGKILL (an eviction, a node drain), not memory.
oom=false
events="${DLAAS_MEMORY_EVENTS:-/sys/fs/cgroup/memory.events}"
if tail -n 200 "$log" | grep -q "CUDA out of memory"; then
    oom=true
elif [ "$rc" -eq 137 ] && [ -r "$events" ] \
        && [ "$(sed -n 's/^oom_kill //p' "$events" 2>/dev/null)" -gt 0 ] 2>/dev/null; then
    oom=true
fi
say "command exited with $rc"

# The engine maps this to STORING (the readiness probe sees the file; people see the line).
: >"$flags/storing"
say "storing results"
stored=true
if [ -n "$DLAAS_UPLOADER" ] && [ -n "$DLAAS_RESULTS_REMOTE" ]; then
    dest="$DLAAS_RESULTS_REMOTE"
    # All learners store RESULT_DIR under the run's prefix (as they share it on one machine). Learner 0's
    # files win: it overwrites, the others only add files not there yet, whatever order they end in.
    # (--ignore-times: a file of the same size and time another learner stored is still replaced.)
    order=""
    if [ "$LEARNER_ID" != 0 ]; then
        order="--ignore-existing"
    elif [ "${NUM_LEARNERS:-1}" -gt 1 ] 2>/dev/null; then
        order="--ignore-times"
    fi
    "$DLAAS_UPLOADER" copy "$RESULT_DIR" "$dest" --no-traverse $order 2>>"$flags/upload.err" || stored=false
    if [ -f "$LOG_DIR/metrics.jsonl" ]; then
        "$DLAAS_UPLOADER" copyto "$LOG_DIR/metrics.jsonl" "$dest/learner-$LEARNER_ID/metrics.jsonl" \
            2>>"$flags/upload.err" || stored=false
    fi
    say "stored: $stored"
    "$DLAAS_UPLOADER" copyto "$log" "$dest/learner-$LEARNER_ID/training-log.txt" \
        2>>"$flags/upload.err" || stored=false
    if [ "$stored" = false ]; then
        tail -n 5 "$flags/upload.err" >&2
    fi
else
    say "stored: skipped (no uploader)"
fi

report=$(printf '{"exit_code":%d,"timed_out":%s,"terminated":%s,"oom":%s,"stored":%s,"finished_at":"%s"}' \
    "$rc" "$timed_out" "$terminated" "$oom" "$stored" "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
printf '%s\n' "$report" >"$DLAAS_TERMINATION_LOG" 2>/dev/null
if [ -n "$DLAAS_UPLOADER" ] && [ -n "$DLAAS_RESULTS_REMOTE" ]; then
    printf '%s\n' "$report" >"$flags/status.json"
    "$DLAAS_UPLOADER" copyto "$flags/status.json" "$DLAAS_RESULTS_REMOTE/learner-$LEARNER_ID/status.json" \
        2>>"$flags/upload.err" || true
fi

if [ "$rc" -eq 0 ] && [ "$stored" = false ]; then
    exit 75
fi
exit "$rc"
