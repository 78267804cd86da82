# The two commands of the contract: `make run` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrapped

.PHONY: run test bench clean

$(STAMP): pyproject.toml tools/bootstrap
	VENV=$(VENV) tools/bootstrap

## run: the local demo — broker, center ledger, center simulator and a terminal (console view)
run: $(STAMP)
	$(PY) -m center.demo

## test: the whole suite against real Mosquitto brokers and real SQLite files
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: measure, print a table, write bench/results.json
bench: $(STAMP)
	$(PY) -m bench.run
	$(PY) -m bench.report

clean:
	rm -rf $(VENV) .demo .pytest_cache .hypothesis
