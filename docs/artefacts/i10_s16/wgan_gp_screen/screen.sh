#!/bin/bash
# WGAN-GP on the InfoGAN networks (configs/wgan_gp_mnist.toml): two epochs per setting, to find one that
# converges faster per step than Gulrajani et al.'s CIFAR settings (the recipe's FID-1k: 2163, 1284).
cd /work/main
G=.venv/bin/genlab
export OMP_NUM_THREADS=1
S=/work/runs/wgscreen
run() { name=$1; shift; $G train --config configs/wgan_gp_mnist.toml --set train.epochs=2 \
  --set train.monitor_modes=true --set train.log_every=100 "$@" --out $S/$name > $S/$name.log 2>&1; }
run b05 --set train.beta1=0.5
run lr3e-4 --set train.lr=3e-4 --set train.beta1=0.5
echo done
