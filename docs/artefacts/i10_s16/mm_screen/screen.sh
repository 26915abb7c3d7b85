#!/bin/bash
# Minimax loss on the DCGAN/InfoGAN networks (configs/dcgan_mnist.toml): one epoch per setting, two at a time,
# to find a setting where D does not saturate the generator's log(1 - D(G(z))) gradient (issue 10).
cd /work/main
G=.venv/bin/genlab
export OMP_NUM_THREADS=1
S=/work/runs/mmscreen
run() { name=$1; shift; $G train --config configs/dcgan_mnist.toml --set model.loss=minimax --set train.epochs=1 \
  --set train.monitor_modes=true --set train.log_every=100 "$@" --out $S/$name > $S/$name.log 2>&1; }
run lrd5e-5 --set model.lr_d=5e-5 & run lrd2e-5 --set model.lr_d=2e-5 & wait
run sn --set model.spectral_norm=true & run lr1e-4 --set train.lr=1e-4 & wait
echo done
