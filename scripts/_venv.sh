# Sourced by scripts/run, scripts/test and scripts/bench: finds a Python >= 3.12 and keeps .venv in
# step with the pinned requirement files. Everything is pinned in constraints.txt, so installing the
# runtime set first and the dev set later resolves to the same versions.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
    # An inherited PYENV_VERSION beats .python-version, so `python3` alone may be too old.
    local cand p v
    for cand in "${LLM_CACHE_PYTHON:-}" python3 python3.12 python3.13 python3.14; do
        [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && python_ok "$cand" && { command -v "$cand"; return 0; }
    done
    if command -v pyenv >/dev/null 2>&1; then
        # 3.12 first (what .python-version and the pins are for), then anything newer.
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -V -r) \
                 $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[3-9]|[2-9][0-9])(\.|$)' | sort -V); do
            p="$(pyenv root)/versions/$v/bin/python3"
            [ -x "$p" ] && python_ok "$p" && { echo "$p"; return 0; }
        done
    fi
    return 1
}

ensure_venv() {  # ensure_venv requirements.txt | requirements-dev.txt
    local req="$1" py want dev_want stamp="$ROOT/.venv/.installed-${1%.txt}"
    if [ ! -x "$ROOT/.venv/bin/python" ] || ! python_ok "$ROOT/.venv/bin/python"; then
        if ! py=$(find_python); then
            echo "llm-cache needs Python >= 3.12 (mitmproxy 12 does), and none was found." >&2
            echo "Install one (e.g. 'pyenv install 3.12' or your OS's python3.12 package)," >&2
            echo "or point LLM_CACHE_PYTHON at its interpreter, then run this again." >&2
            exit 1
        fi
        echo "creating .venv with $("$py" --version 2>&1) ($py)" >&2
        rm -rf "$ROOT/.venv"
        "$py" -m venv "$ROOT/.venv"
    fi
    want=$(cat "$ROOT/requirements.txt" "$ROOT/$req" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)
    dev_want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)
    if [ "$(cat "$ROOT/.venv/.installed-requirements-dev" 2>/dev/null)" = "$dev_want" ]; then
        return 0  # the dev set includes the runtime set
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "installing pinned dependencies from $req into .venv" >&2
        "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$ROOT/$req" -c "$ROOT/constraints.txt" 2> >(grep -v "is ignored: it is neither" >&2)
        echo "$want" > "$stamp"
    fi
}
