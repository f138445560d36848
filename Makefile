# kiln top-level Makefile: thin wrapper over CMake.
#   make        build (Release) into build/
#   make test   install missing Debian packages, build, run every test (ctest)
#   make demo   build and run the Fashion-MNIST demo on the best device present
#   make asan   tests again under AddressSanitizer + UndefinedBehaviorSanitizer
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# The CUDA backend is compiled whenever a toolkit is installed (GPU or not).
NVCC ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
ifneq ($(NVCC),)
CUDA_FLAGS := -DCMAKE_CUDA_COMPILER=$(NVCC) -DCMAKE_CUDA_ARCHITECTURES=90
endif

.PHONY: all deps test demo asan bench clean


all: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CUDA_FLAGS) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# the whole-model tests need python3-torch & co. to export the models
deps:
	KILN_DEPS_PYTHON=1 ./scripts/deps.sh

demo:
	KILN_DEPS_DEMO=1 ./scripts/deps.sh
	$(MAKE) all
	./$(BUILD)/examples/fashion_mnist_demo models/fashion_mnist.onnx /usr/share/datasets/fashion-mnist

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_CUDA=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -LE slow

bench: all
	./$(BUILD)/bench/bench_cpu

clean:
	rm -rf $(BUILD) build-asan
