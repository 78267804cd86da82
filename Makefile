# The two commands of the contract: `make run` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrapped

.PHONY: run test bench fleet image image-test screens voices clean

$(STAMP): pyproject.toml tools/bootstrap
	VENV=$(VENV) tools/bootstrap

## run: the local demo — broker, center ledger, center simulator and a terminal (console view)
run: $(STAMP)
	$(PY) -m devkit.demo

## test: the whole suite against real Mosquitto brokers and real SQLite files
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: measure, print a table, write bench/results.json
bench: $(STAMP)
	$(PY) -m bench.run
	$(PY) -m bench.report

## fleet: the fleet simulator (thousands of real terminals, storms, kills, a slow ledger, power cuts)
##        → bench/fleet.json, docs/fleet.md, docs/fleet/*.png; FLEET_ARGS=--quick for a short run
fleet: $(STAMP)
	$(PY) -m bench.fleet $(FLEET_ARGS)

## image: the SD-card image (Debian 12 arm64 by mmdebstrap; root, network) → image-build/out/
image: $(STAMP)
	tools/bootstrap-image
	$(PY) image-build/build $(IMAGE_ARGS)

## image-test: boot the image in qemu-system-aarch64 against a broker on the host (slow; after make image)
image-test: $(STAMP)
	tools/bootstrap-image
	$(PY) -m pytest -m image -s -p no:cacheprovider tests/image/test_boot_qemu.py

## screens: render the README's pictures into docs/screens/ (tests write to a temp dir otherwise)
screens: $(STAMP)
	HCP_SCREENS_DIR=docs/screens $(PY) -m pytest -q -p no:cacheprovider tests/ui/test_layout.py \
		tests/provisioning/test_browser.py tests/center/test_phone_browser.py tests/center/test_followup_browser.py tests/center/test_ratings_browser.py \
		tests/provisioning/test_center_service.py

## voices: render the voice prompts (ui/voice/) with espeak-ng's Mandarin voice
voices: $(STAMP)
	$(PY) tools/render-voices

clean:
	rm -rf $(VENV) .demo .pytest_cache .hypothesis
