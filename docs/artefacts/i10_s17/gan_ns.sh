#!/bin/bash
# configs/gan_mnist.toml (MLPs, non-saturating) to its 30-epoch budget after the WGAN-GP chain frees its core,
# then domain and Inception metrics (issue 10: the recipe's header had no measured result).
cd /work/main
while pgrep -f wg24.sh > /dev/null; do sleep 30; done
export OMP_NUM_THREADS=1
G=.venv/bin/genlab
R=/work/runs/gan_ns
$G train --config configs/gan_mnist.toml --set train.monitor_modes=true --out $R
$G eval $R --metrics fid,pr,modes --n 10000 --quiet
$G sample $R -n 64 -o $R/sample.png
$G eval $R --metrics fid,kid,pr --features inception --precision bf16 --n 10000
echo done
