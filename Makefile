# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean browser mutation mutation-report

# Two layers: what the pipeline runs on (enough for `make demo`) and the tools the tests use on
# top. pip byte-compiles one file at a time (~1 min here); compileall does it on every core.
# Without the .pyc files every process would compile its imports again where
# PYTHONDONTWRITEBYTECODE is set (CI sets it: the suite took 25 minutes instead of 14).
# compileall's failures are ignored as pip ignores them: a few packages ship test data that is
# not Python 3.11 source.
COMPILE = $(PY) -m compileall -qq -j 0 $(VENV)/lib >/dev/null || true
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch is pinned first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q --no-compile torch==2.13.0
	$(PY) -m pip install -q --no-compile -e .
	$(COMPILE)
	# Prefect's empty database, migrated once here: a run's new Prefect home starts from a copy.
	$(PY) -m app.prefect_home
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	$(COMPILE)
	touch $(STAMP)

install: $(STAMP)

demo: $(RUNTIME)
	$(VENV)/bin/mova-ads demo

# Two workers (pytest-xdist): an end-to-end test spends much of its time waiting on its own
# processes (server start-ups, renders in a Ray actor, ffmpeg), so two overlap on 2 cores.
TEST_WORKERS ?= 2
test: install browser
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

# The review page's browser test drives Debian's chromium (no browser download): install it
# when this is a Debian machine and we are root; otherwise that one test is skipped.
browser:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "chromium could not be installed: the browser test will be skipped"

# Mutation testing (mutmut, [tool.mutmut] and [tool.mova-mutation] in pyproject.toml) against
# each module's fast tests; not part of `make test`. One module at a time, niced, one worker by
# default (CPU is shared): `make mutation MUTATE='infra.storage.*'`. Each module runs in its own
# work directory, mutants/<module>/ (tests/mutation_run.py), so modules with different tests keep
# their results. Prints per module killed / survived / equivalent (tests/mutation_equivalents.md)
# and the score.
MUTATE ?= infra.storage.* tasks.qc.* mova_model.audio_vae.* mova_model.pipeline.* \
	infra.repository.* mova_model.sampler.* mova_model.joint.* mova_model.text_encoder.* \
	schemas.brief.* schemas.finishing.* app.auth.*
MUTATION_JOBS ?= 1
MUTATION_ARGS ?=

mutation: install
	-@set -f; $(PY) tests/mutation_run.py --jobs $(MUTATION_JOBS) $(MUTATION_ARGS) $(MUTATE)
	$(PY) tests/mutation_report.py

mutation-report:
	$(PY) tests/mutation_report.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .mova mutants

# The demo model: the tiny MOVA trained on the synthetic world of demo_world/ (issue 17), seeded
# and resumable (rerun to continue); 75 min on 2 CPU cores, timed on 2026-12-05 (README).
# Measure it with `$(PY) bench/content.py --checkpoint $(DEMO_MODEL)`.
DEMO_MODEL ?= assets/demo-model
.PHONY: demo-model
demo-model: $(RUNTIME)
	$(PY) -m training.run --out $(DEMO_MODEL) --work .demo-model-run/work --budget full --threads 2
