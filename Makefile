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
	$(BIN)/ruff check --no-cache .

test: lint
	$(BIN)/python -m pytest
	$(MAKE) test-django6
	$(MAKE) test-pythons

clean:
	rm -rf $(VENV) .venv-py* build *.egg-info .pytest_cache .ruff_cache

# Benchmarks against the peers (docs/benchmarks.md): see benchmarks/README.md.
.PHONY: bench bench-quick
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks

bench-quick: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks --quick

# The suite on the other supported Pythons, each in a venv of its own (.venv-pyX.Y),
# with an interpreter from pyenv (or PATH): 3.10 (Django 5.2) and 3.13 (Django 6)
# run it whole, 3.12 runs the Django tests on Django 6.  An interpreter that is
# missing is skipped with a message (and fails the run under CI=true).
.PHONY: test-pythons test-python test-django6
test-pythons:
	$(MAKE) test-python PY=3.10 DJANGO='django>=5.2,<6' DJANGO_TASKS='django-tasks>=0.12'
	$(MAKE) test-python PY=3.13 DJANGO='django>=6,<7'

test-django6:
	$(MAKE) test-python PY=3.12 DJANGO='django>=6,<7' TESTS='tests/test_django_*.py tests/test_compat_django.py'

PY ?= 3.12
DJANGO ?= django>=5.2,<6
# the backport of django.tasks, for Django 5.2 only (Django 6 has django.tasks)
DJANGO_TASKS ?=
TESTS ?=
VENV_PY = .venv-py$(PY)
test-python:
	@py=""; root=$$(pyenv root 2>/dev/null || true); \
	for c in $$(ls -d "$$root"/versions/$(PY).*/bin/python 2>/dev/null | sort -V -r) $$(command -v python$(PY)); do \
	  if [ -z "$$py" ] && [ -x "$$c" ] && "$$c" -c 'import sys, venv; assert sys.version_info[:2] == tuple(map(int, "$(PY)".split(".")))' 2>/dev/null; \
	  then py="$$c"; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "test-python: SKIPPED: no Python $(PY) found (pyenv root: $${root:-none})"; \
	  case "$${CI:-}" in true|1|yes) exit 1;; esac; exit 0; \
	fi; \
	if [ ! -f $(VENV_PY)/.installed ] || [ pyproject.toml -nt $(VENV_PY)/.installed ]; then \
	  echo "test-python: making $(VENV_PY) with $$py"; \
	  rm -rf $(VENV_PY) && "$$py" -m venv $(VENV_PY) && \
	  $(VENV_PY)/bin/python -m pip install --quiet --upgrade pip && \
	  $(VENV_PY)/bin/python -m pip install --quiet -e . '$(DJANGO)' $(if $(DJANGO_TASKS),'$(DJANGO_TASKS)') gunicorn \
	    'celery[redis]>=5.3' 'pytest>=8' 'pytest-timeout>=2.3' 'selenium>=4.11' 'prometheus-client>=0.17' && \
	  touch $(VENV_PY)/.installed || exit 1; \
	fi; \
	$(VENV_PY)/bin/python -c 'import sys, django; print("test-python: Python", sys.version.split()[0], "with Django", django.__version__)'; \
	$(VENV_PY)/bin/python -m pytest -p no:cacheprovider $(TESTS)
