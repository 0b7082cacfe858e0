# make test: create .venv when missing, install avdiar[dev] under constraints.txt, run pytest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo install lint clean-venv

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# make demo: synthetic AV database, tiny audio-only + models 6/7/8 trained from scratch,
# evaluated and compared. Everything lands under demo/.
DEMO := demo
DEMO_STEPS ?= 150
DEMO_TRAIN := --protocol Synthetic.SpeakerDiarization.AV --database $(DEMO)/db/database.yml \
	--video-dir $(DEMO)/db/video --esize 128 --duration 5 --batch-size 16 --max-steps $(DEMO_STEPS) \
	--val-every 50 --workers 1 --lstm-hidden 64 --lstm-layers 2 --linear-hidden 64 --cdir $(DEMO) --project runs \
	--groundtruths test

demo: export HF_HUB_OFFLINE ?= 1
demo: $(STAMP)
	test -f $(DEMO)/db/database.yml || $(PY) run.py synth --out $(DEMO)/db --esize 128
	for m in 0 6 7 8; do $(PY) run.py --model $$m --name model$$m $(DEMO_TRAIN) || exit 1; done
	$(PY) run.py compare $(DEMO)/runs/model0 $(DEMO)/runs/model6 $(DEMO)/runs/model7 $(DEMO)/runs/model8 --out $(DEMO)
	@echo "demo: reports, RTTMs, TensorBoard logs and plots under $(DEMO)/ ; table in $(DEMO)/comparison.md"
	@cat $(DEMO)/comparison.md

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

# make bench-venv: .bench-venv with avdiar and pyannote.audio 4.0.7 (benchmarks only; the tests
# never import pyannote.audio). make bench: run bench/vs_pyannote.py from it.
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
	$(BENCH_VENV)/bin/python bench/vs_pyannote.py $(BENCH_ARGS)
