# make demo · make test · make bench — each sets up its own virtual environment on a fresh machine, from the lock.
# The lock is uv.lock (every package pinned with its hashes); uv itself comes from tools/uv-requirements.txt (hashed).
VENV   ?= .venv
TOOLS  ?= .tools
PYTHON ?= python3
BIN     = $(VENV)/bin
UV      = $(TOOLS)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
STAMP   = $(VENV)/.installed-$(shell cat uv.lock tools/uv-requirements.txt | sha256sum | cut -c1-12)

.PHONY: install browser demo test test-fast bench lock plotly-bundle axe-core clean

$(UV): tools/uv-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes --no-deps -r tools/uv-requirements.txt
	touch $@

# Installs exactly what uv.lock says (never resolves ranges); fails if pyproject.toml and the lock disagree.
$(STAMP): uv.lock pyproject.toml $(UV)
	$(UV) sync --frozen --extra test --extra ray --python $(PYTHON) --quiet
	rm -f $(VENV)/.installed-*
	touch $@

# Re-resolve the lock after editing pyproject.toml's pins (the one step that reads the package index's ranges).
lock: $(UV)
	$(UV) lock

install: $(STAMP)

# Browser tests need Debian's chromium + chromium-driver; installed here when missing and apt is usable (root),
# otherwise those tests skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium + chromium-driver for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed and apt-get unavailable: browser tests will be skipped"; fi; \
	fi

demo: install
	$(BIN)/neuron-atlas demo

test: install browser
	$(BIN)/python -m pytest -q

# The unit and API tests only (no browser, no slow end-to-end runs): about 2 minutes on 2 cores (the whole suite: ~11).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

# Rebuild assets/plotly-partial.min.js, the dashboard's plotly.js with only the trace types it draws (needs node and
# npm; installs the exact versions of tools/plotly-bundle/package-lock.json). The committed file is what this makes.
plotly-bundle:
	cd tools/plotly-bundle && npm ci --no-audit --no-fund --ignore-scripts && node build.js

# The axe-core the accessibility browser test injects (tests/browser/vendor/axe.min.js, committed: CI has no npm).
# Needs npm; installs the exact version of tools/axe-core/package-lock.json and checks axe-core's published SRI hash.
axe-core:
	cd tools/axe-core && npm ci --no-audit --no-fund --ignore-scripts && node build.js

clean:
	rm -rf $(VENV) $(TOOLS) data build dist *.egg-info
