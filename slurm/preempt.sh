# Sourced by the sbatch scripts: run training in the background, turn SLURM's warning
# signals into a clean checkpoint, then requeue the job.
#
#   #SBATCH --requeue --signal=B:USR1@120   USR1 to the batch shell 120 s before the limit
#
# torchrun's agent dies on a raw USR1, so the signal goes to this shell only. On USR1 or
# TERM the shell touches $AVDIAR_STOP_FILE; every training rank checks that file (and its
# own SIGUSR1/SIGTERM flag) at each step, all ranks agree at the same step, rank 0 saves
# checkpoints/last.pt, and all exit 0. The shell then runs `scontrol requeue`; the
# requeued job starts the same command, which resumes from last.pt (--resume auto).

: "${EXP_DIR:?set EXP_DIR (the experiment folder) before sourcing preempt.sh}"
export AVDIAR_STOP_FILE="${AVDIAR_STOP_FILE:-$EXP_DIR/STOP}"
AVDIAR_SIGNALLED=""

avdiar_on_signal() {
    AVDIAR_SIGNALLED="$1"
    echo "$(date '+%F %T') batch shell: got SIG$1, asking training to checkpoint" \
         "(touch $AVDIAR_STOP_FILE)"
    mkdir -p "$(dirname "$AVDIAR_STOP_FILE")"
    touch "$AVDIAR_STOP_FILE"
}
trap 'avdiar_on_signal USR1' USR1
trap 'avdiar_on_signal TERM' TERM

# avdiar_run COMMAND...: run COMMAND (an srun line) in the background and wait for it;
# requeue the job if a signal came meanwhile. Returns COMMAND's status otherwise.
avdiar_run() {
    rm -f "$AVDIAR_STOP_FILE"  # a stale request from the previous run of this job
    echo "$(date '+%F %T') launching: $*"
    "$@" &
    local pid=$! status
    while true; do
        wait "$pid"
        status=$?
        # wait returns > 128 when a trapped signal interrupts it: keep waiting
        if [ "$status" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then
            continue
        fi
        break
    done
    if [ -n "$AVDIAR_SIGNALLED" ]; then
        echo "$(date '+%F %T') training exited with status $status after SIG$AVDIAR_SIGNALLED;" \
             "requeueing job ${SLURM_JOB_ID:-?}"
        if [ -n "${SLURM_JOB_ID:-}" ]; then
            scontrol requeue "$SLURM_JOB_ID"
        fi
        exit 0
    fi
    return "$status"
}
