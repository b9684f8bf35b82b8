# Sourced by scripts/test after _venv.sh and ensure_venv: installs the agent/SDK frameworks the
# end-to-end tests in tests/frameworks run as clients, once per change of their pins:
#   .cache/frameworks/venv   openai-agents, LangChain, LiteLLM, Pydantic AI (tests/frameworks/requirements.txt)
#   .cache/frameworks/node   the Vercel AI SDK and Node 24 (tests/frameworks/package.json and its lock)
# A venv of their own: they are clients run as subprocesses, and their dependencies must not move
# the pins of .venv (mitmproxy's).
ensure_frameworks() {
    local dir="$ROOT/.cache/frameworks" src="$ROOT/tests/frameworks" want py
    want=$(cat "$src/requirements.txt" "$src/constraints.txt" | sha256sum | cut -c1-16)
    if [ "$(cat "$dir/venv/.installed" 2>/dev/null)" != "$want" ]; then
        # The interpreter .venv was made from: `.venv/bin/python -m venv` would make a venv whose
        # python links back into .venv.
        py=$(sed -n 's/^executable *= *//p' "$ROOT/.venv/pyvenv.cfg")
        if [ ! -x "$py" ]; then
            py="$(sed -n 's/^home *= *//p' "$ROOT/.venv/pyvenv.cfg")/python3"
        fi
        echo "installing the pinned frameworks (openai-agents, LangChain, LiteLLM, Pydantic AI) into .cache/frameworks/venv" >&2
        rm -rf "$dir/venv"
        "$py" -m venv "$dir/venv"
        "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$src/requirements.txt" -c "$src/constraints.txt" 2> >(grep -v "is ignored: it is neither" >&2)
        echo "$want" > "$dir/venv/.installed"
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm was not found: the Vercel AI SDK test (tests/frameworks) needs Node.js and npm" >&2
        echo "(Debian: apt-get install nodejs npm); without them it is skipped, or fails under CI" >&2
        return 0
    fi
    want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)
    if [ "$(cat "$dir/node/.installed" 2>/dev/null)" != "$want" ]; then
        echo "installing the pinned Vercel AI SDK and Node 24 into .cache/frameworks/node" >&2
        mkdir -p "$dir/node"
        cp "$src/package.json" "$src/package-lock.json" "$dir/node/"
        (cd "$dir/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) && echo "$want" > "$dir/node/.installed"
    fi
}
