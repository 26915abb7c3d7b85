#!/bin/bash
# configs/lsgan_mnist.toml to its 20-epoch budget, then domain and Inception metrics (issue 10: the recipe's header had no measured result).
cd /work/main
export OMP_NUM_THREADS=1
G=.venv/bin/genlab
R=/work/runs/lsgan
$G train --config configs/lsgan_mnist.toml --set train.monitor_modes=true --out $R
$G eval $R --metrics fid,pr,modes --n 10000 --quiet
$G sample $R -n 64 -o $R/sample.png
$G eval $R --metrics fid,kid,pr --features inception --precision bf16 --n 10000
echo done
