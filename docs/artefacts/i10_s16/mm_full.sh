#!/bin/bash
# Minimax DCGAN (InfoGAN networks) for 20 epochs with a slower discriminator (issue 10's minimax row).
cd /work/main
export OMP_NUM_THREADS=1
G=.venv/bin/genlab
name=$1; shift
$G train --config configs/dcgan_mnist.toml --set model.loss=minimax --set train.monitor_modes=true "$@" --out /work/runs/$name
