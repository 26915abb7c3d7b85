#!/usr/bin/env bash
# The runs of one lent-GPU session (issues 12, 13, 14), side by side on one GPU, each stopped by wall clock.
#
#   benchmarks/gpu_session.sh TRAIN_S EVAL_N OUT [JOB=EPOCHS ...]
#
# Every job trains with `genlab train` until its epochs end or TRAIN_S seconds pass (benchmarks/gpu_lib.sh), then
# is evaluated there. Evaluations use the first EVAL_N images (10000 for the published protocols).
# JOB=EPOCHS sets a job's epochs (sized from a short probe's throughput, so that schedules end near TRAIN_S);
# PHASE sets ProGAN's phase length in images. A DDPM run folder carried as .dev/ddpm_gn is evaluated as it is
# (ddpm3) and trained on (ddpm). The weights of the runs evaluated again on the CPU come back in
# OUT/weights_JOB.tar.gz (seven files in all: the device returns at most eight). The session of
# 2026-11-30 ran `benchmarks/gpu_session.sh 40 100 $OUT` (the probe), then
# `PHASE=12000 benchmarks/gpu_session.sh 390 10000 $OUT ddpm=8 gated_pixelcnn=6 nade=18 made=18 made32=16 rbm=28
# stylegan=20 stylegan_r1=20 progan=20` (BENCHMARKS.md, "One lent H200").
set -u
TRAIN_S=$1 EVAL_N=$2 OUT=$3
shift 3
source "$(dirname "$0")/gpu_lib.sh"
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
finish ddpm gated_pixelcnn stylegan stylegan_r1 progan clf32
