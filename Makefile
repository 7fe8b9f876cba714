# Two entry points (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-faketime lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## The monthly job on the bundled sample publication (file transport: .eml files in outbox/).
## The sample's latest ready issue is due on 2026-10-06; --now evaluates the schedule at that
## moment. A real cron line is just `newsletter send --due`.
run: $(STAMP)
	$(BIN)/newsletter check
	$(BIN)/newsletter subscribers import subscribers/sample.csv
	$(BIN)/newsletter send --due --now 2026-10-06T09:00
	$(BIN)/newsletter build
	$(BIN)/newsletter status

## The whole test suite, then the linters: all three run even when one fails, and the
## target fails if any did. The suite runs on every core (pytest-xdist; TEST_JOBS=0 runs it in
## one process): most tests wait on servers and subprocesses, and CI has two cores.
TEST_JOBS ?= auto
test: $(STAMP)
	@status=0; \
	$(BIN)/pytest -q -n $(TEST_JOBS) || status=1; \
	$(BIN)/ruff check newsletter tests bench || status=1; \
	$(BIN)/mypy || status=1; \
	exit $$status

## The suite minus what cannot run under libfaketime (`-m "not real_clock"`), at two instants
## where clock bugs show: a first Tuesday after 09:00 that is a sample issue's date, and
## 31 December 23:59. Only the wall clock is faked (it starts at the instant in every process
## and runs on); monotonic time, which every deadline uses, stays real. libfaketime comes from
## PyPI (the test extra): Debian's 0.9.10 breaks Python's sleep and Event.wait. The instant is
## read once (FAKETIME_CACHE_DURATION): re-reading FAKETIME on every clock call raced with
## tests setting environment variables while a server thread waited in select(), and crashed
## pytest (SIGSEGV in getenv). A run still killed by a signal is run once more; a failing test
## never is; under pytest-xdist a crashed worker's test is run once more instead (conftest.py).
## The workers inherit LD_PRELOAD and FAKETIME; tests/test_faked_clock.py fails if the clock
## where the tests run is not the faked one.
## Nothing more is left out (reviewed 2026-12-01): the heaviest tests that do run here (several
## senders on PostgreSQL, the web under load, the send and schedule kills, a year of publishing)
## drive code that reads the wall clock: store timestamps (database.utcnow), retry and hold due
## times (delivery/policy.py), the message Date header, the web app's clock, `send ISSUE`
## without --now. On PostgreSQL the server keeps the real clock (pgserver.py) while the code
## runs on the faked one, a mix these passes exist to try.
FAKETIME_AT = "2026-10-06 10:00:00" "2026-12-31 23:59:00"
FAKETIME_LIB = $(shell $(BIN)/python -c 'import libfaketime, pathlib; print(pathlib.Path(libfaketime.__file__).parent / "vendor/libfaketime/src/libfaketime.so.1")' 2>/dev/null)
test-faketime: $(STAMP)
	for at in $(FAKETIME_AT); do \
	  for attempt in 1 2; do \
	    echo "== the clock at $$at"; \
	    LD_PRELOAD=$(FAKETIME_LIB) FAKETIME="@$$at" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_CACHE_DURATION=86400 \
	      $(BIN)/pytest -q -p no:cacheprovider -n $(TEST_JOBS) -m "not real_clock"; rc=$$?; \
	    [ $$rc -eq 0 ] && break; \
	    [ $$rc -lt 128 ] || [ $$attempt -eq 2 ] && exit 1; \
	    echo "== pytest was killed by signal $$((rc - 128)) (libfaketime): once more"; \
	  done; \
	done

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) build outbox .pytest_cache .mypy_cache
