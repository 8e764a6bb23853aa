# The two commands of the README, plus benchmarks. CMake does the building.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PORT ?= 8080

.PHONY: all deps build model test demo run bench sanitize fuzz format clean

all: build

deps:
	scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# all-MiniLM-L6-v2 (the text encoder's weights) into models/; quick when present.
model:
	scripts/fetch-model

test: build model
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Prepares the MovieLens demo (synthetic when no data is found), its models and
# indexes, and starts funneld.
run: build model
	scripts/run-demo $(BUILD) $(PORT)

# What run prepares (data, store, models, indexes, configuration), without serving; idempotent.
demo: build model
	scripts/run-demo --prepare $(BUILD)

bench: build
	bench/run-all $(BUILD)

# The same suites under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize: deps
	cmake -S . -B build-asan -DFUNNEL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

# libFuzzer targets, each run for FUZZ_SECONDS.
FUZZ_SECONDS ?= 30
fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DFUNNEL_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	tests/fuzz/run build-fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-fuzz
