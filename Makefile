# Two commands do all the set-up (see README): `make run` and `make test`.
# Both create .venv when missing, install the pinned packages, and install Debian's chromium
# (used for static figure export and the browser test) when it is not on the machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8501
# Run the app on the shared offline datasets when they sit beside the checkout.
ifneq ($(wildcard ../shared/data),)
export TRAINLAB_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: run test setup system-deps bench soak ray-test

setup: $(STAMP) system-deps

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $(STAMP)

# Chromium drives Plotly's PNG/SVG export (kaleido) and the end-to-end browser test.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium (for figure export and browser tests)..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# `python -m app` (app/__main__.py) is `streamlit run app/main.py` with app/offline.py's patch
# applied before the server serves: no external-IP lookup on foreign WebSocket origins.
run: setup
	$(PY) -m app --server.address $(HOST) --server.port $(PORT)

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/bench_train.py
	$(PY) bench/bench_charts.py

# The long soak (minutes): run by hand, not in CI.
soak: setup
	$(PY) -m pytest -m soak -p no:cacheprovider tests/engine/test_soak.py

# The slow Ray tests (a local Ray instance per test: killed workers, a killed driver, data
# through the object store): run by hand, not in CI.
ray-test: setup
	$(PY) -m pytest -m ray_slow -p no:cacheprovider tests/e2e/test_ray.py

# The real server killed (kill -9, SIGTERM) while a browser-launched run trains, alone (they
# are part of `make test` too; about 30 s).
.PHONY: faults
faults: setup
	$(PY) -m pytest -m faults -p no:cacheprovider tests/e2e/test_server_faults.py

# The standing fuzzing harness at full strength (tests/fuzz): 10,000 random examples per input
# path (config values, config and experiment files, URL parameters, CLI argument vectors, run
# names and tags, IDX/CIFAR archives); tens of minutes. `make test` runs a short profile.
.PHONY: fuzz
fuzz: setup
	TRAINLAB_FUZZ=long $(PY) -m pytest -p no:cacheprovider --timeout=7200 \
	  --hypothesis-show-statistics tests/fuzz

# A Ray head that requires a token (engine/ray_head.py): makes ~/.ray/auth_token (mode 600)
# when there is no token, starts `ray start --head` with token authentication on port
# RAY_HEAD_PORT (6379), announcing RAY_HEAD_HOST (default: this machine's address; Ray listens
# on every interface whatever it announces), and prints how another machine joins and how to
# point Train Lab at it. Stop it with `.venv/bin/ray stop`.
.PHONY: ray-head
ray-head: setup
	$(PY) -m engine.ray_head
