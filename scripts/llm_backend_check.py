"""One real completion from llama.cpp's server on a model file (``scripts/llm_backend.sh``'s last step).

Run with the LLM venv's interpreter: ``.venv-llm/bin/python scripts/llm_backend_check.py MODEL.gguf``.
Exits 0 once the server answered a chat completion; otherwise 1 with the reason (a build the CPU
cannot run dies with SIGILL, status -4, on the first completion).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request


def main(model: str) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "512"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    body = json.dumps({"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi."}]}).encode()
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                err = server.stderr.read().decode(errors="replace")[-1500:]
                hint = " (-4 is SIGILL: an instruction this CPU cannot run; rebuild with CMAKE_ARGS=-DGGML_NATIVE=OFF)" \
                    if server.returncode == -4 else ""
                print(f"llm-backend: the server exited with status {server.returncode}{hint}\n{err}", file=sys.stderr)
                return 1
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                                 headers={"content-type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as r:
                    answer = json.load(r)
                break
            except OSError:
                if time.monotonic() > deadline:
                    print("llm-backend: no completion within 120 s", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        text = answer["choices"][0]["message"]["content"]
        print(f"llm-backend: one completion checked: {text!r}")
        return 0
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        print(f"llm-backend: the answer is not a chat completion: {exc}", file=sys.stderr)
        return 1
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
