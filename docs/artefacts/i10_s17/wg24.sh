#!/bin/bash
# WGAN-GP at Adam 3e-4, betas (0.5, 0.9): the 12-epoch run (Inception FID 29.97, FID-1k still falling) resumed
# to 24 epochs (constant rate, so the same run as 24 epochs from the start), then domain and Inception metrics (issue 10).
cd /work/main
export OMP_NUM_THREADS=1
G=.venv/bin/genlab
R=/work/runs/wgan_gp_lr3e-4
$G train --config configs/wgan_gp_mnist.toml --set train.lr=3e-4 --set train.beta1=0.5 --set train.epochs=24 \
  --set train.monitor_modes=true --out $R
$G eval $R --metrics fid,pr,modes --n 10000 --quiet
$G sample $R -n 64 -o $R/sample.png
$G eval $R --metrics fid,kid,pr --features inception --precision bf16 --n 10000
echo done
