# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/python -m coldoc_tasks.demo

lint: venv
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest
	$(MAKE) test-django6

clean:
	rm -rf $(VENV) $(VENV_DJANGO6) build *.egg-info .pytest_cache .ruff_cache

# Benchmarks against the peers (docs/benchmarks.md): see benchmarks/README.md.
.PHONY: bench bench-quick
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks

bench-quick: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks --quick

# The Django tests again with Django 6, which needs Python 3.12+: a second venv
# with a Python 3.12 or 3.13 from pyenv (or on PATH); skipped if there is none.
VENV_DJANGO6 ?= .venv-django6
.PHONY: test-django6
test-django6:
	@py=""; root=$$(pyenv root 2>/dev/null || true); \
	for v in 3.12 3.13; do \
	  for c in $$(ls -d "$$root"/versions/$$v.*/bin/python 2>/dev/null | sort -V -r) $$(command -v python$$v); do \
	    if [ -z "$$py" ] && [ -x "$$c" ] && "$$c" -c 'import sys, venv; assert sys.version_info >= (3, 12)' 2>/dev/null; \
	    then py="$$c"; fi; \
	  done; \
	done; \
	if [ -z "$$py" ]; then echo "test-django6: SKIPPED: no Python 3.12 or 3.13 found (pyenv root: $${root:-none})"; exit 0; fi; \
	if [ ! -f $(VENV_DJANGO6)/.installed ] || [ pyproject.toml -nt $(VENV_DJANGO6)/.installed ]; then \
	  echo "test-django6: making $(VENV_DJANGO6) with $$py"; \
	  "$$py" -m venv $(VENV_DJANGO6) && \
	  $(VENV_DJANGO6)/bin/python -m pip install --quiet --upgrade pip && \
	  $(VENV_DJANGO6)/bin/python -m pip install --quiet -e . 'django>=6,<7' gunicorn 'celery[redis]>=5.3' \
	    'pytest>=8' 'pytest-timeout>=2.3' && \
	  touch $(VENV_DJANGO6)/.installed || exit 1; \
	fi; \
	$(VENV_DJANGO6)/bin/python -c 'import sys, django; print("test-django6: Django", django.__version__, "on Python", sys.version.split()[0])'; \
	$(VENV_DJANGO6)/bin/python -m pytest tests/test_django_*.py
