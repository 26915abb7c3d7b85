#!/bin/bash
# configs/wgan_mnist.toml (weight clipping) toward its 50-epoch budget; started late in session 17, to be resumed
# by the same command in a later session (issue 10: the recipe has not been run to its budget).
cd /work/main
export OMP_NUM_THREADS=2
G=.venv/bin/genlab
R=/work/runs/wgan_clip
$G train --config configs/wgan_mnist.toml --set train.monitor_modes=true --out $R
$G eval $R --metrics fid,pr,modes --n 10000 --quiet
$G sample $R -n 64 -o $R/sample.png
$G eval $R --metrics fid,kid,pr --features inception --precision bf16 --n 10000
echo done
