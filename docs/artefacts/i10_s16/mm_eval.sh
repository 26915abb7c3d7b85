#!/bin/bash
# The minimax DCGAN with the slower discriminator: domain metrics, a grid, then Inception (bf16) on 10k samples.
cd /work/main
export OMP_NUM_THREADS=1
G=.venv/bin/genlab
R=/work/runs/mm_lrd5e-5
$G eval $R --metrics fid,pr,modes --n 10000 --quiet
$G sample $R -n 64 -o $R/sample.png
$G eval $R --metrics fid,kid,pr --features inception --precision bf16 --n 10000
echo done
