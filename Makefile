# Wayfare — every target does its own setup on a fresh Debian machine (as root), idempotently.
#   make test   run every test (forge suite, Rust tests against a real anvil)
#   make demo   a whole local network: devnet, 3 seller daemons and a buyer moving real traffic
#               and real payments for about a minute, then a table read back from meters and chain
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

export CARGO_TARGET_DIR ?= $(CURDIR)/target
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests and the demo need (namespace lab tools join as the data planes land).
APT_PACKAGES := ca-certificates curl git iproute2 nftables conntrack pkg-config build-essential nodejs npm \
	iperf3 shadowsocks-libev wireguard-go wireguard-tools tcpdump chromium chromium-driver miniupnpd-nftables systemd dbus-daemon
DEVNET_DIR ?= $(CURDIR)/.devnet
WAYFARE := $(CARGO_TARGET_DIR)/debug/wayfare


PREFIX ?= /usr/local
# Cargo-installed tools, outside the clone (kept between runs; installed only when missing).
TOOLS_DIR ?= /var/cache/wayfare/tools
CARGO_DEB_VERSION := 3.8.0
export WAYFARE_CARGO_DEB := $(TOOLS_DIR)/bin/cargo-deb
# systemd-resolved unpacked (not installed: installing it would take over this machine's DNS),
# for the lab test of a buyer whose DNS systemd-resolved manages.
export WAYFARE_RESOLVED_DIR := $(TOOLS_DIR)/systemd-resolved

.PHONY: help setup apt npm tools build install deb devnet test test-contracts test-rust lint fmt demo artifacts snapshot bench-proto \
	bench-shadowsocks bench-wireguard bench-connect bench-indexer bench-flood bench-nat

help:
	@echo "make test        set up everything, then run every test"
	@echo "make demo        set up everything, then run the whole network for a minute (3 sellers, 1 buyer) and print what moved"
	@echo "make deb         build the Debian package (binary, systemd unit, man pages) into \$$CARGO_TARGET_DIR/debian"
	@echo "make install     build a release binary and install it as the systemd service wayfare (root; PREFIX=/usr/local)"
	@echo "make lint        cargo fmt --check and clippy -D warnings"
	@echo "make artifacts   rebuild the contract and refresh crates/wayfare-chain/artifacts"
	@echo "make snapshot    refresh contracts/.gas-snapshot"
	@echo "make bench-proto run the wayfare-proto micro-benchmarks"
	@echo "make bench-shadowsocks  Wayfare shadowsocks vs shadowsocks-libev (iperf3, namespace lab, root)"
	@echo "make bench-wireguard    Wayfare WireGuard vs wireguard-go (iperf3, namespace lab, root)"
	@echo "make bench-connect      time from \`wayfare connect\` to the first byte through the tunnel (devnet)"
	@echo "make bench-nat          channel open -> first byte: a seller behind a UPnP home router vs a direct one (root)"
	@echo "make bench-flood        a 50-peer quote flood against a paying session: absorbed rate, memory, honest p99 (root)"
	@echo "make bench-indexer      reputation indexer throughput on 100,000 market events read from anvil (devnet)"

setup: apt npm tools

# Installs only what is missing, so a second run costs a few dpkg queries.
apt:
	@want="$(APT_PACKAGES)"; \
	if command -v node >/dev/null && command -v npm >/dev/null; then want="$${want/nodejs npm/}"; fi; \
	missing=""; for p in $$want; do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs) and re-run"; exit 1; }

npm: contracts/node_modules/.wayfare-installed

tools: $(WAYFARE_CARGO_DEB) $(WAYFARE_RESOLVED_DIR)/.unpacked

$(WAYFARE_CARGO_DEB):
	CARGO_TARGET_DIR=$(TOOLS_DIR)/build $(CARGO) install --locked --quiet --root $(TOOLS_DIR) --version $(CARGO_DEB_VERSION) cargo-deb
	rm -rf $(TOOLS_DIR)/build

# The same version as the installed systemd (resolvectl links against its libsystemd-shared).
$(WAYFARE_RESOLVED_DIR)/.unpacked:
	v=$$(dpkg-query -W -f='$${Version}' systemd); d=$$(mktemp -d); \
	( cd $$d && { apt-get download -qq systemd-resolved=$$v 2>/dev/null \
	  || { $(SUDO) apt-get update -qq && apt-get download -qq systemd-resolved=$$v; }; } ) \
	&& rm -rf $(WAYFARE_RESOLVED_DIR) && dpkg-deb -x $$d/systemd-resolved_*.deb $(WAYFARE_RESOLVED_DIR) \
	&& rm -rf $$d && touch $@

contracts/node_modules/.wayfare-installed: contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund
	touch $@

build: setup
	$(CARGO) build --workspace --all-targets

# The release binary into $(PREFIX)/bin, the unit dist/wayfare.service, the user `wayfare` and
# its directories (`wayfare service install`; `--dry-run` shows the steps). Starts nothing.
install: setup
	$(CARGO) build --release -p wayfare-cli
	$(SUDO) $(CARGO_TARGET_DIR)/release/wayfare service install --bin $(PREFIX)/bin/wayfare

# The package: the release binary, the unit with ExecStart=/usr/bin/wayfare, `wayfare man` pages
# and the config reference (crates/wayfare-cli/Cargo.toml [package.metadata.deb]).
deb: setup
	$(CARGO) build --release -p wayfare-cli
	rm -rf $(CARGO_TARGET_DIR)/release/deb-assets
	$(CARGO_TARGET_DIR)/release/wayfare man $(CARGO_TARGET_DIR)/release/deb-assets/man
	$(CARGO_TARGET_DIR)/release/wayfare service unit --bin /usr/bin/wayfare > $(CARGO_TARGET_DIR)/release/deb-assets/wayfare.service
	cd crates/wayfare-cli && $(WAYFARE_CARGO_DEB) --no-build -o $(CARGO_TARGET_DIR)/debian/

test: setup test-contracts test-rust

test-contracts: npm
	contracts/forge test
	contracts/export-artifact --check

test-rust: setup
	$(CARGO) test --workspace

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

artifacts: npm
	contracts/export-artifact

snapshot: npm
	contracts/forge snapshot

bench-proto:
	$(CARGO) bench -p wayfare-proto

bench-shadowsocks: setup
	bench/shadowsocks/run.sh

bench-wireguard: setup
	bench/wireguard/run.sh

# BENCH_PROFILE=release for release figures (a cold release build takes a long while here).
BENCH_PROFILE ?= dev
bench-connect: setup npm
	$(CARGO) bench -p wayfare-cli --bench connect --profile $(BENCH_PROFILE)

# Time from channel open to the first byte: a seller at home behind the lab's UPnP router
# against a directly reachable one (root).
bench-nat: setup npm
	$(CARGO) bench -p wayfare-cli --bench nat --profile $(BENCH_PROFILE)

bench-flood: setup npm
	$(CARGO) bench -p wayfare-cli --bench flood --profile $(BENCH_PROFILE)

bench-indexer: setup npm
	$(CARGO) bench -p wayfare-node --bench indexer --profile $(BENCH_PROFILE)

demo: setup npm
	$(CARGO) build -p wayfare-cli
	$(WAYFARE) demo $(DEMO_ARGS)

devnet: setup npm
	$(CARGO) build -p wayfare-cli
	$(WAYFARE) devnet --sellers 3 --buyers 1 --dir $(DEVNET_DIR)
