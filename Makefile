# Aerie — make run (start everything), make test (every test), make bench.
GO       ?= go
BIN      := bin/aerie
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/aeriemq/aerie/internal/buildinfo.Version=$(VERSION)
# System packages the build and the tests need (Debian/Ubuntu names).
SYS_PKGS := postgresql librocksdb-dev mosquitto mosquitto-clients chromium chromium-driver python3-paho-mqtt
# Terraform (not a Debian package) for the provider's tests; any ≥ 1.11 works.
TERRAFORM_VERSION ?= 1.11.4
TEST_TIMEOUT ?= 30m
# Test packages run one at a time: their servers, browsers and load
# generators would otherwise compete for this 2-core machine's CPUs and turn
# timing into noise. TEST_P=2 runs two at once.
TEST_P ?= 1
# The patched mochi-mqtt server is a module of its own (the root's ./... does
# not reach it): vet and test run in it too.
MOCHI := third_party/mochi-server

.PHONY: all build run test bench fuzz deps fmt vet generate clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/aerie

run: deps build
	./$(BIN) serve

# deps installs missing system packages with apt-get when root; otherwise it
# prints the exact command and stops.
deps:
	@missing=""; for p in $(SYS_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "missing system packages:$$missing (install them with your package manager)"; exit 1; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing system packages; run:"; echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	@command -v terraform >/dev/null 2>&1 || { \
	  echo "terraform is not on PATH: the Terraform provider's tests (cmd/terraform-provider-aerie) drive the real binary and fail without it."; \
	  echo "  Debian/Ubuntu: add the HashiCorp apt repository (https://developer.hashicorp.com/terraform/install), then apt-get install terraform"; \
	  echo "  elsewhere: download terraform_$(TERRAFORM_VERSION) for your OS from https://releases.hashicorp.com/terraform/$(TERRAFORM_VERSION)/ and put the binary on PATH"; \
	}

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_templ.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd $(MOCHI) && $(GO) vet ./...

test: deps vet
	$(GO) test -count=1 -p $(TEST_P) -timeout $(TEST_TIMEOUT) ./...
	cd $(MOCHI) && $(GO) test -count=1 -p $(TEST_P) -timeout $(TEST_TIMEOUT) ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime=1x -timeout 60m ./...

# fuzz runs each fuzz target for FUZZTIME (make test runs their seeds only).
# A failing input is written under the package's testdata/fuzz/; commit it
# with the fix so that make test keeps running it. New inputs are minimized
# for at most FUZZMINTIME (Go's default, 60 s, can outlast a short run).
FUZZTIME ?= 30s
FUZZMINTIME ?= 5s
FUZZ_TARGETS := ./dataplane/gateway:FuzzConnection ./dataplane/gateway:FuzzPacketDecode
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$pkg; \
	done

clean:
	rm -rf bin data

# generate rewrites the console's *_templ.go from its *.templ files and the Go
# SDK (sdk/aerie.gen.go) from openapi.yaml.
generate:
	$(GO) generate ./sdk
	$(GO) tool templ generate -path console
