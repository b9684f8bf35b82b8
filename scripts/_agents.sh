# Sourced by scripts/test after _venv.sh: installs the real agents the end-to-end tests run (pinned in
# tests/agents/package.json and its lock) into .cache/agents, once per change of the pins.
ensure_agents() {
    local dir="$ROOT/.cache/agents" want
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm was not found: the tests with real agents (tests/agents) need Node.js and npm" >&2
        echo "(Debian: apt-get install nodejs npm); without them they are skipped, or fail under CI" >&2
        return 0
    fi
    want=$(cat "$ROOT/tests/agents/package.json" "$ROOT/tests/agents/package-lock.json" | sha256sum | cut -c1-16)
    if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$want" ]; then
        echo "installing the pinned agents (Claude Code, Codex CLI, Gemini CLI, Node) into .cache/agents" >&2
        mkdir -p "$dir"
        cp "$ROOT/tests/agents/package.json" "$ROOT/tests/agents/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) && echo "$want" > "$dir/.installed"
    fi
}
