# Everything a new machine needs is installed from nothing by these targets.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: all venv test lint demo samples vectors bench bench-smoke campaign clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	sh scripts/ensure-journal-remote.sh
	sh scripts/ensure-test-tools.sh
	$(BIN)/ruff check svsmlog tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check svsmlog tests benchmarks
	$(BIN)/mypy svsmlog

vectors: $(STAMP)
	$(BIN)/python -m svsmlog.vectors formats/vectors

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info

# svsmlog against journald and the AES-GCM limit at 100k and 1M records (issue 6; about
# 8 minutes on the 2-core machine); prints the table for benchmarks/README.md.
bench: $(STAMP)
	sh scripts/ensure-journal-remote.sh
	$(BIN)/python -m benchmarks.bench --records 100000 1000000 --repeat 3

# The same harness at 20k records, one round: a quick end-to-end check of it.
bench-smoke: $(STAMP)
	sh scripts/ensure-journal-remote.sh
	$(BIN)/python -m benchmarks.bench --records 20000 --repeat 1

# The main job: a guest owner extracting the logs of a crashed (panicked) SVSM, and proving
# from the boot's SEV-SNP report (TEST-ONLY AMD chain, expected launch measurement) that the
# SVSM it launched wrote them.
demo: $(STAMP)
	@chmod 600 samples/TEST-ONLY-*.key  # git checks files out 0644; a private key is kept 0600
	$(BIN)/svsmlog extract samples/vtpm-panic.img --key samples/TEST-ONLY-owner.key \
	    --trust-root samples/TEST-ONLY-amd-chain.pem --measurement $$(cat samples/measurement.hex)

samples: $(STAMP)
	$(BIN)/python -m svsmlog.model.samples samples

# Full-size crash, tamper and hostile-input campaigns; writes the figures (about 10 minutes).
campaign: $(STAMP)
	$(BIN)/python -m svsmlog.campaign --out docs/campaigns.md
