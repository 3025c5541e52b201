# Entry points for people and CI. The tools they need: Go, and for demo and
# test a Mosquitto broker (both scripts install the Debian package when it
# is missing).

GO ?= go

.PHONY: demo test build install

# A guided tour against a private broker and simulated devices (about 30 s).
# KEEP=1 keeps its temp dir; STEP_DELAY=5s slows the simulated devices.
demo:
	./scripts/demo.sh

# Every test, end-to-end scripts against a real Mosquitto included.
test:
	./scripts/test.sh

build:
	$(GO) build -o otactl ./cmd/otactl

# Installs into $(go env GOBIN), else $(go env GOPATH)/bin.
install:
	$(GO) install ./cmd/otactl
