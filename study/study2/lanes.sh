# Study 2's lanes, sourced by the lane scripts (imagenette/main.sh, imagenette/screen.sh,
# cifar/regime_b.sh) from the repository root: the checks of their environment and one claimed run.
#
#   lane_init SCRIPT LANE DEFAULT_RUN_MINUTES   # refuses (exit 2) a LANE other than 0 or 1, a DEADLINE
#                                               # that is not unix seconds, a RUN_MINUTES not a whole number
#   lane_run RUN_DIR CLAIM LABEL MINUTES CMD... # trains one run unless finished, claimed or past DEADLINE
#   exit "$LANE_FAILED"                         # 1 if any run failed
#
# A lane walks its runs in order and takes the next one that is neither finished (RUN_DIR/metrics.json)
# nor claimed. The claim is an flock on $CLAIMS/CLAIM.lock held while the run trains (it goes with the
# process however it ends), and metrics.json is checked again inside the claim, so two lanes never
# train one run (not even one that finished between a lane's check and its claim), and a lane that
# finishes early takes the other lane's next run instead of idling. DEADLINE (optional, unix seconds):
# a run taken to last MINUTES is not started if it would end after it, so a session that ends at a
# known time loses no half-run; the lane goes on to the next run (a shorter one may still fit).
# CMD's stdout is discarded (the run keeps its own log); the lane prints one line per start and end.

lane_init() {
    LANE_SCRIPT=$1
    LANE=$2
    case "$LANE" in
    0 | 1) ;;
    *) echo "$LANE_SCRIPT: LANE must be 0 or 1 (a label for the log), got '$LANE'" >&2 && exit 2 ;;
    esac
    if [ -n "${DEADLINE:-}" ] && ! [[ "$DEADLINE" =~ ^[0-9]+$ ]]; then
        echo "$LANE_SCRIPT: DEADLINE must be unix seconds (date -d '+175 min' +%s), got '$DEADLINE'" >&2 && exit 2
    fi
    RUN_MINUTES=${RUN_MINUTES:-$3}
    if ! [[ "$RUN_MINUTES" =~ ^[0-9]+$ ]]; then
        echo "$LANE_SCRIPT: RUN_MINUTES must be a whole number, got '$RUN_MINUTES'" >&2 && exit 2
    fi
    CLAIMS=${CLAIMS:-/tmp/rsmix-study2-claims}
    mkdir -p "$CLAIMS"
    export OMP_NUM_THREADS=1
    LANE_FAILED=0
}

lane_run() {
    local run_dir=$1 claim=$2 label=$3 minutes=$4 status=0
    shift 4
    [ -f "$run_dir/metrics.json" ] && return 0
    if [ -n "${DEADLINE:-}" ] && [ $(($(date +%s) + minutes * 60)) -gt "$DEADLINE" ]; then
        echo "$(date -Is) deadline: not starting $label"
        return 0
    fi
    # exit status 75: another lane holds the claim; 76: the run finished meanwhile (checked inside the claim)
    flock -n -E 75 "$CLAIMS/$claim.lock" bash -c '
        [ -f "$0/metrics.json" ] && exit 76
        echo "$(date -Is) start $1 (lane $2)"
        shift 2 && exec "$@" >/dev/null' "$run_dir" "$label" "$LANE" "$@" || status=$?
    case $status in
    0) echo "$(date -Is) done $label" ;;
    75 | 76) ;;
    *) echo "$(date -Is) FAILED $label (exit $status)" && LANE_FAILED=1 ;;
    esac
}
