#!/bin/bash
# Train a recipe with the mode monitor on, then its domain metrics, a grid and the Inception metrics (issue 10).
#   run_recipe.sh RUN_DIR CONFIG [--set KEY=VALUE ...]
# Sessions 16-17 ran (each on 1 thread; the WGAN clip run on 2):
#   run_recipe.sh /work/runs/wgan_gp_lr3e-4 configs/wgan_gp_mnist.toml --set train.lr=3e-4 --set train.beta1=0.5 \
#     --set train.epochs=12      # then the same with --set train.epochs=24: resumes the run to 24 epochs
#   run_recipe.sh /work/runs/lsgan configs/lsgan_mnist.toml
#   run_recipe.sh /work/runs/gan_ns configs/gan_mnist.toml
#   OMP_NUM_THREADS=2 run_recipe.sh /work/runs/wgan_clip configs/wgan_mnist.toml   # stopped at epoch 28 of 50;
#     the same with OMP_NUM_THREADS=1 resumed it to 50 (eighteenth session)
#   run_recipe.sh /work/runs/gan_ns100 configs/gan_mnist.toml --set train.epochs=100   # a copy of gan_ns's
#     30-epoch folder, resumed to 100 (nineteenth session, its commands written out in a script of their own)
#   run_recipe.sh /work/runs/dcgan_mm_s1 configs/dcgan_minimax_mnist.toml --set train.seed=1   # (nineteenth)
set -e
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
G=.venv/bin/genlab
R=$1; C=$2; shift 2
$G train --config "$C" --set train.monitor_modes=true "$@" --out "$R"
$G eval "$R" --metrics fid,pr,modes --n 10000 --quiet
$G sample "$R" -n 64 -o "$R/sample.png"
$G eval "$R" --metrics fid,kid,pr --features inception --precision bf16 --n 10000
