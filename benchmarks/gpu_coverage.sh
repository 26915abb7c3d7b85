#!/usr/bin/env bash
# The runs of the ninth session's lent GPU (issues 10 and 12), side by side on one GPU, each stopped by wall clock
# (benchmarks/gpu_lib.sh says how).
#
#   benchmarks/gpu_coverage.sh TRAIN_S EVAL_N COV_N OUT [JOB=EPOCHS ...]
#
# - The coverage check (benchmarks/coverage.py's protocol) for the generators it had not yet measured with their
#   defaults: the pixel-by-pixel samplers (pixelcnn, gated_pixelcnn, pixelrnn) train 3 epochs and are read once
#   after the last by `genlab eval --metrics modes --n COV_N --ref train --seed 1`; realnvp by the trainer's
#   monitor after every epoch.
# - NICE (the paper's map, and the logit map) for as many epochs as the clock allows, read by the monitor after
#   each: does coverage come with training, or never (the CPU's 3 epochs read every sample as 8)?
# - The WGAN-GP recipe of the time (configs/wgan_gp_mnist.toml at Adam 1e-4, betas (0, 0.9)) past its 10 CPU epochs, and ProGAN's defaults for 3 epochs
#   (issue 12's comparison at 180,000 images): domain FID / precision-recall / classes on EVAL_N samples here,
#   the weights back for the Inception FID on the CPU (the Inception weights, 87 MB, do not fit the 64 MiB that
#   travels).
# - A larger Gated PixelCNN (width 128, 12 layers, batch 128) against the recipe's 87.00 nats: exact NLL here.
# The ninth session (2026-11-30) ran `EVAL_S=180 benchmarks/gpu_coverage.sh 340 10000 1000 $OUT gated_big=6`, then,
# on the still-warm machine, `EVAL_S=80 benchmarks/gpu_coverage.sh 170 10000 1000 $OUT gated_big=6`, which resumed
# the unfinished runs from their checkpoints and evaluated again (BENCHMARKS.md, "Ninth session").
set -u
TRAIN_S=$1 EVAL_N=$2 COV_N=$3 OUT=$4
shift 4
source "$(dirname "$0")/gpu_lib.sh"
N=$EVAL_N
JOBS=()
coverage_final() {  # MODEL: 3 epochs with defaults, classes read once at the end
    train "cov_$1" "$1" --data mnist --epochs 3 --seed 0 --set train.monitor_modes=false
    ev "cov_$1" --metrics modes --n "$COV_N" --ref train --seed 1
}
for m in pixelcnn gated_pixelcnn pixelrnn; do
    { coverage_final $m; } &
    JOBS+=($!)
done
{ train cov_realnvp realnvp --data mnist --epochs 3 --seed 0 --set train.monitor_modes=true; } &
JOBS+=($!)
{ train nice_long nice --data mnist --epochs 1000 --seed 0 --set train.monitor_modes=true; } &
JOBS+=($!)
{ train nice_logit_long nice --data mnist --epochs 1000 --seed 0 --set train.monitor_modes=true --set model.alpha=1e-6; } &
JOBS+=($!)
{ train wgan_gp_long --config configs/wgan_gp_mnist.toml --set train.lr=1e-4 --set train.beta1=0.0 --set train.epochs=1000
  ev wgan_gp_long --metrics fid,pr,modes --n "$N"; } &
JOBS+=($!)
{ train progan3 progan --data mnist --epochs 3 --seed 0 --set train.monitor_modes=true
  ev progan3 --metrics fid,pr,modes --n "$N"
  ev progan3 --metrics ppl --n 2000; } &
JOBS+=($!)
{ train gated_big --config configs/gated_pixelcnn_mnist.toml --set model.width=128 --set model.layers=12 \
      --set train.batch_size=128
  ev gated_big --metrics nll --n "$N"; } &
JOBS+=($!)
wait "${JOBS[@]}"
finish wgan_gp_long progan3
