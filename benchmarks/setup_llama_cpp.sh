#!/usr/bin/env bash
# Build (once) llama.cpp's own command-line tools for the LLM benchmarks: llama-perplexity, llama-bench and
# llama-quantize, from the llama.cpp vendored in the sdist of the PyPI package llama-cpp-python (the version
# installed in .venv, 0.3.36 by default), so the tools match the library the Python benchmarks use.
#
# Layout (all under runs/, which is git-ignored):
#   runs/llama.cpp/dl/      the downloaded sdist (llama_cpp_python-<version>.tar.gz)
#   runs/llama.cpp/src/     the unpacked sdist; llama.cpp itself is src/vendor/llama.cpp
#   runs/llama.cpp/build/   the cmake build tree
#   runs/llama.cpp/bin/     the three tools (copied out of build/bin; llama and ggml linked in statically)
#
# Build: Release, static libraries, GGML_NATIVE=ON (tuned to *this* CPU: rebuild on another machine), no server,
# web UI, curl, OpenSSL, tests or examples; only the three targets, with -j2. It takes ~6 minutes on 2 cores (+1 to download).
# cmake comes from .venv/bin, else PATH; if neither has one it is pip-installed into .venv.
#
# Idempotent: when the three binaries are already in bin/ and the stamp file there names the same version, it only
# prints where they are. Delete runs/llama.cpp/bin to force a rebuild (the build tree is reused).
#
# Usage: bash benchmarks/setup_llama_cpp.sh          (env: LLAMA_CPP_PYTHON_VERSION, LLAMA_DIR, JOBS)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
DIR="${LLAMA_DIR:-$ROOT/runs/llama.cpp}"
JOBS="${JOBS:-2}"
TARGETS=(llama-perplexity llama-bench llama-quantize)
STAMP="$DIR/bin/.stamp"
WANT="llama-cpp-python==$VERSION"
# GGML_NATIVE turns on llama.cpp's AMX matmul where the CPU advertises AMX; in this project's VMs it dies with
# SIGILL on its first tileloadd (measured: llama-bench on Q4_1), so the tools are built without AMX (AVX-512 VNNI
# stays). Set LLAMA_CPP_AMX=1 to keep it where it works.
NO_AMX=""
if [ "${LLAMA_CPP_AMX:-0}" != 1 ] && [ "$(uname -m)" = x86_64 ]; then NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
BUILD_KIND="$WANT${NO_AMX:+ (no AMX)}"

have_all() {
    local t
    for t in "${TARGETS[@]}"; do [ -x "$DIR/bin/$t" ] || return 1; done
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$BUILD_KIND" ]
}

if have_all; then
    echo "llama.cpp tools ready ($WANT) in $DIR/bin:"
    for t in "${TARGETS[@]}"; do echo "  $DIR/bin/$t"; done
    exit 0
fi

# --- cmake ------------------------------------------------------------------------------------------------------
if [ -x "$VENV/bin/cmake" ]; then
    CMAKE="$VENV/bin/cmake"
elif command -v cmake >/dev/null 2>&1; then
    CMAKE="$(command -v cmake)"
else
    echo "cmake not found: installing it into $VENV with pip"
    "$VENV/bin/pip" install -q cmake
    CMAKE="$VENV/bin/cmake"
fi
echo "cmake: $CMAKE ($("$CMAKE" --version | head -n1))"

# --- sources ----------------------------------------------------------------------------------------------------
SDIST="$DIR/dl/llama_cpp_python-$VERSION.tar.gz"
SRC="$DIR/src"
LLAMA="$SRC/vendor/llama.cpp"
if [ ! -f "$SDIST" ]; then
    mkdir -p "$DIR/dl"
    echo "downloading the sdist of $WANT"
    "$VENV/bin/pip" download "$WANT" --no-deps --no-binary :all: -d "$DIR/dl"
fi
if [ ! -f "$SRC/.stamp" ] || [ "$(cat "$SRC/.stamp")" != "$WANT" ] || [ ! -f "$LLAMA/CMakeLists.txt" ]; then
    echo "unpacking $SDIST into $SRC"
    rm -rf "$SRC" "$DIR/build"
    mkdir -p "$SRC"
    tar xzf "$SDIST" -C "$SRC" --strip-components=1
    echo "$WANT" >"$SRC/.stamp"
fi

# --- build ------------------------------------------------------------------------------------------------------
BUILD="$DIR/build"
start=$(date +%s)
"$CMAKE" -S "$LLAMA" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$NO_AMX" \
    -DCMAKE_CXX_FLAGS="$NO_AMX" \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DGGML_CCACHE=OFF
"$CMAKE" --build "$BUILD" --config Release --target "${TARGETS[@]}" -j "$JOBS"
echo "build took $(($(date +%s) - start)) s"

mkdir -p "$DIR/bin"
for t in "${TARGETS[@]}"; do
    cp -f "$BUILD/bin/$t" "$DIR/bin/$t"
done
"$DIR/bin/llama-bench" --help >/dev/null
echo "$BUILD_KIND" >"$STAMP"
echo "llama.cpp tools ready ($BUILD_KIND) in $DIR/bin:"
for t in "${TARGETS[@]}"; do echo "  $DIR/bin/$t"; done
