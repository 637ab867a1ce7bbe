# Set-up and the two everyday commands. `make train` and `make test` create the virtual
# environment on first use and install everything from this project's own files.
#
# TORCH pins the CPU build of PyTorch that CI and these machines use. With a GPU, install the
# build for your hardware instead, e.g. `make TORCH=torch train` (see the README).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# TorchRec's metadata asks for the CUDA package fbgemm-gpu: it goes in without dependencies, next to
# the fbgemm build and the other requirements that the `test` and `torchrec` extras list.
TORCHREC ?= torchrec==1.8.0
BIN := $(VENV)/bin

.PHONY: train test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "$(TORCHREC)"
	touch $@

train: install
	$(BIN)/mtrec train

# The layering contract (pyproject.toml, [tool.importlinter]) is checked before the tests.
test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
