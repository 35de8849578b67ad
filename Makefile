# medview -- every target sets up what it needs (Debian packages when missing, .venv, pinned deps).
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.medview-installed
EXTRAS ?= dev,ai,analysis,net

# Qt (offscreen or X11) and VTK (OSMesa) runtime libraries
DEBS_RUN := libglib2.0-0 libegl1 libgl1 libx11-6 libdbus-1-3 libfontconfig1 libfreetype6 libxkbcommon0 \
            libosmesa6 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 \
            libxcb-shape0 libxkbcommon-x11-0
# independent references and file makers used by the tests
DEBS_TEST := $(DEBS_RUN) dcm2niix plastimatch libgdcm-tools dcmtk dicom3tools mricron-data orthanc orthanc-dicomweb \
             openssl

export VENV EXTRAS

.PHONY: run test bench lint setup-run setup-test clean

$(STAMP): pyproject.toml constraints.txt
	@packaging/setup/make-venv.sh
	@touch $(STAMP)

setup-run:
	@packaging/setup/ensure-debs.sh $(DEBS_RUN)

setup-test:
	@packaging/setup/ensure-debs.sh $(DEBS_TEST)

run: setup-run $(STAMP)
	@packaging/setup/run-gui.sh $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check medview tests
	$(VENV)/bin/lint-imports

test: setup-test $(STAMP) lint
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q --ignore=tests/benchmarks $(PYTEST_ARGS)

bench: setup-test $(STAMP)
	$(VENV)/bin/python -m pytest -q -s tests/benchmarks -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .bench
