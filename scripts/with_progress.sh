#!/usr/bin/env bash
# with_progress.sh - run a long, quiet command with its output in a log, and say where it stands
# every PROGRESS_S seconds, so a first `make demo` or `make test` never sits silent (in a terminal
# or in a CI log).
#
#   scripts/with_progress.sh LABEL LOG CMD [ARGS...]
#
# Prints "[LABEL] <where it stands>, 1m20s so far" every PROGRESS_S seconds (default 8: a line at
# least every 10 s, with room for a slow machine). <where it stands> is what the MILESTONE command
# prints when given LOG (default: the log's last line, cut to 100 characters). On failure, the
# log's last 30 lines go to stderr. The exit code is CMD's; Ctrl-C stops CMD too.
set -euo pipefail

label=$1 log=$2
shift 2
PROGRESS_S=${PROGRESS_S:-8}

where() {
    if [[ -n "${MILESTONE:-}" ]]; then
        $MILESTONE "$log"
    else
        tail -n 1 "$log" 2>/dev/null | tr -d '\r' | cut -c1-100 | sed 's/^ *//'
    fi
}

mkdir -p "$(dirname "$log")"
"$@" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; exit 130' INT TERM
t0=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
    for ((i = 0; i < PROGRESS_S; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null || break
    elapsed=$((SECONDS - t0))
    echo "[$label] $(where || echo working), $((elapsed / 60))m$((elapsed % 60))s so far" >&2
done
trap - INT TERM
rc=0
wait "$pid" || rc=$?
if ((rc != 0)); then
    echo "[$label] FAILED (exit $rc); the last lines of $log:" >&2
    tail -n 30 "$log" >&2
fi
exit "$rc"
