# herald: `make demo` runs the reference flow, `make test` runs every check.
PYTHON ?= python3
# The stamp names this checkout's path and the interpreter: a moved checkout, or another
# Python, installs again (an editable install points at one path).
INSTALLED := .installed-$(shell printf '%s' "$(CURDIR) $$(command -v $(PYTHON))" | cksum | cut -d' ' -f1)

.PHONY: install demo test lint typecheck unit bench clean services

$(INSTALLED): pyproject.toml
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(PYTHON) -m herald demo

lint: $(INSTALLED)
	$(PYTHON) -m ruff check src tests benchmarks examples
	$(PYTHON) -m mypy

# The services the tests talk to (installed and started on loopback); empty means all of them.
SERVICES ?=

services:
	bash scripts/services.sh up $(SERVICES)
	bash scripts/browser.sh

test: $(INSTALLED) lint services
	$(PYTHON) -m pytest -q

bench: $(INSTALLED)
	$(PYTHON) benchmarks/run.py --json benchmarks/results/latest.json

clean:
	rm -rf .installed-* .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
