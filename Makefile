# vmrun — see README.md. The two commands a newcomer needs:
#   make demo    install QEMU if missing, build vmrun and the demo disk, boot it with --net auto
#   make test    install what the tests need, build the test guest, lint, run every test layer
SHELL := /bin/bash
GO ?= go
BIN := bin/vmrun
GUEST_DIR := $(shell bash test/guest/build.sh --print-dir 2>/dev/null)
STATICCHECK_VERSION := v0.8.2
GOBIN := $(shell $(GO) env GOPATH)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages: to run VMs, to build the test guest, and for the tests'
# LAN side (DHCP server, Wi-Fi AP and station inside the nested kernel).
DEPS_RUN := qemu-system-x86 qemu-utils
DEPS_GUEST := busybox-static cpio kmod syslinux syslinux-common mtools dosfstools xz-utils qemu-guest-agent dropbear-bin
DEPS_TEST := iproute2 dnsmasq-base passt hostapd wpasupplicant iw procps util-linux ipxe-qemu openssh-client

.PHONY: all build demo test test-unit test-deps demo-deps guest nested lint bench soak stress clean install

all: build

# Static (no cgo): no dynamic loader at start-up (about 4 ms of vmrun's
# start-up cost), and the binary runs unchanged inside the nested rig.
# urfave_cli_no_docs leaves out urfave/cli's markdown and man-page
# generators, which vmrun never calls but whose packages' init runs at
# every start (0.6 ms of init here; GODEBUG=inittrace=1 shows it).
BUILD_TAGS := urfave_cli_no_docs
# vmrun --version prints the commit it was built from.
COMMIT := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags "-X main.commit=$(COMMIT)" -o $(BIN) ./cmd/vmrun

# Install Debian packages that are missing (apt-get update first, as on a fresh machine).
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

demo-deps:
	$(call apt_install,$(DEPS_RUN) $(DEPS_GUEST))

test-deps:
	$(call apt_install,$(DEPS_RUN) $(DEPS_GUEST) $(DEPS_TEST))
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

guest:
	bash test/guest/build.sh

# The nested-kernel rig (layer 4: Wi-Fi via mac80211_hwsim, ipvlan, vhost-net).
nested:
	bash test/nested/build.sh

# The demo guest gets an address, checks that its gateway answers, prints
# both on the console and powers off by itself: the command ends with exit 0.
demo: demo-deps build guest
	$(SUDO) ./$(BIN) --disk "$$(bash test/guest/build.sh --print-dir)/demo.qcow2" --snapshot --console serial --net auto --timeout 5m

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...
	@# Every skip goes through testutil (a bare t.Skip passes under CI=true).
	$(GO) test -count=1 -run '^TestNoBareSkip$$' ./internal/testutil

test-unit:
	$(GO) test -race -count=1 ./...

# Every layer: pure, kernel (namespaces), QEMU end to end, nested kernel.
# Root tests need root; under CI=true a test that cannot run fails.
test: test-deps build guest nested lint
	$(SUDO) env "PATH=$$PATH" CI=$(CI) VMRUN_STRICT=$(VMRUN_STRICT) $(GO) test -race -count=1 -timeout 75m ./...

# The crash-injection soak (test/e2e/soak_test.go): SOAK_ROUNDS rounds per
# network mode, kills during a live switch of a --net auto guest included
# (make test runs 20, 3 of the switch). SOAK_SEED replays a run; SOAK_MODES
# (e.g. nat,routed) and SOAK_ROUND (one round number) narrow it down;
# SOAK_DURATION (e.g. 2h) starts no round after that time.
SOAK_ROUNDS ?= 1000
soak: test-deps guest
	$(SUDO) env "PATH=$$PATH" CI=$(CI) VMRUN_STRICT=1 SOAK_ROUNDS=$(SOAK_ROUNDS) SOAK_SEED=$(SOAK_SEED) SOAK_MODES=$(SOAK_MODES) SOAK_ROUND=$(SOAK_ROUND) SOAK_DURATION=$(SOAK_DURATION) \
		$(GO) test -count=1 -timeout 0 -v -run '^TestSoak$$' ./test/e2e/

# The flakiness check (not run by CI, which runs `make test`): the pure,
# kernel and launcher layers -count=$(STRESS_COUNT) times on a loaded
# machine with a cold page cache. See scripts/stress.sh and README.md.
STRESS_COUNT ?= 5
stress: test-deps
	$(SUDO) env "PATH=$$PATH" STRESS_COUNT=$(STRESS_COUNT) STRESS_RUN='$(value STRESS_RUN)' STRESS_PKGS='$(value STRESS_PKGS)' bash scripts/stress.sh

bench: build guest
	$(SUDO) env "PATH=$$PATH" bash scripts/bench.sh

# Install for unprivileged use: the binary with file capabilities
# (cap_net_admin,cap_net_raw,cap_mknod+p; vmrun setup sets them itself, no setcap
# needed), group vmrun, /etc/vmrun/allow.conf, the NetworkManager drop-in.
# See docs/security.md. Then: sudo usermod -aG vmrun USER.
install: build
	$(SUDO) ./$(BIN) setup

clean:
	rm -rf bin
