#!/usr/bin/env bash
# Install and then update a real open-source application with the toolkit, end
# to end, and keep every output for docs/real-world-run.md.
#
# Usage: scripts/real_world_run.sh [WORK_DIR]
#
# Steps: download two consecutive sdists of APP from the package index with
# pip, and derive each one's requirements.txt from its PKG-INFO. Publish both
# as releases and serve them with the reference middleware on 127.0.0.1.
# Install OLD into a fresh home with setup_orchestrator.py, then update it to
# NEW. Run the verification once more, compare the installed tree with the
# published NEW release, and run the application from its environment.
#
# WORK_DIR (default: a new temp folder) must be absent or empty. It is kept at
# the end, and WORK_DIR/results/summary.md contains the tables.
#
# Environment: APP (httpie), OLD (3.2.3), NEW (3.2.4), ENTRY_POINT
# (httpie/__main__.py), APP_MODULE (httpie when APP is httpie, else unset: the
# module run as `python -m APP_MODULE --version`; set it only for an app whose
# --version makes no network request), PYTHON (the interpreter that creates
# .venv when it is missing).
#
# The only network access outside loopback is pip: installing the toolkit's
# requirements into .venv, `pip download` of the two sdists, and the
# verification's `pip install` of the app's requirements. pip download
# prepares each sdist's metadata, which runs its setup.py.
#
# Exit code: 0 when every step succeeded, 1 when one failed (the outputs up to
# that point stay in WORK_DIR/results), 2 for a WORK_DIR that is not empty.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

app="${APP:-httpie}"
old="${OLD:-3.2.3}"
new="${NEW:-3.2.4}"
entry_point="${ENTRY_POINT:-httpie/__main__.py}"
app_module="${APP_MODULE:-}"
if [ -z "$app_module" ] && [ "$app" = httpie ]; then
    app_module=httpie
fi

work="${1:-$(mktemp -d "${TMPDIR:-/tmp}/real-world-run.XXXXXX")}"
if [ -e "$work" ] && [ -n "$(ls -A "$work")" ]; then
    echo "error: WORK_DIR $work is not empty. Pass a new or empty folder." >&2
    exit 2
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
results="$work/results"
home="$work/home"
mkdir -p "$results" "$work/sdists" "$work/src" "$work/requirements"

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
python="$root/.venv/bin/python"

failed=0
middleware_pid=""

stop_middleware() {
    if [ -n "$middleware_pid" ]; then
        kill "$middleware_pid" 2>/dev/null || true
        wait "$middleware_pid" 2>/dev/null || true
        middleware_pid=""
    fi
}
trap stop_middleware EXIT

# timed NAME COMMAND...: run COMMAND with its output in results/NAME.out and
# results/NAME.err. Write the elapsed wall seconds, the peak RSS (KiB, with GNU
# time only) and the exit code to results/NAME.time. Return the exit code.
timed() {
    local name="$1"
    shift
    local start end code=0
    start=$(date +%s.%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -o "$results/$name.rss" -f "%M" "$@" \
            >"$results/$name.out" 2>"$results/$name.err" || code=$?
    else
        "$@" >"$results/$name.out" 2>"$results/$name.err" || code=$?
    fi
    end=$(date +%s.%N)
    {
        echo "elapsed_seconds=$(awk "BEGIN { printf \"%.3f\", $end - $start }")"
        # GNU time writes a "Command exited with non-zero status" line first.
        echo "max_rss_kb=$(tail -n 1 "$results/$name.rss" 2>/dev/null || echo)"
        echo "exit_code=$code"
    } >"$results/$name.time"
    rm -f "$results/$name.rss"
    echo "$name: exit code $code"
    return "$code"
}

step() {
    timed "$@" || failed=1
}

# Wait until the middleware's request log stops growing, so that the lines of
# a finished command are all written before the log is sliced.
settle_log() {
    local before after
    for _ in $(seq 1 25); do
        before=$(wc -l <"$results/middleware.log")
        sleep 0.2
        after=$(wc -l <"$results/middleware.log")
        [ "$before" = "$after" ] && return 0
    done
}

# log_slice NAME COMMAND...: run `step NAME COMMAND...` and keep the
# middleware log lines it caused in results/NAME.middleware.log.
log_slice() {
    local name="$1" first
    first=$(($(wc -l <"$results/middleware.log") + 1))
    step "$@"
    settle_log
    tail -n "+$first" "$results/middleware.log" >"$results/$name.middleware.log"
}

# The machine and the toolkit revision, for the record.
{
    echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -s)"
    echo "kernel=$(uname -srm)"
    echo "cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
    echo "cores=$(nproc)"
    echo "memory_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
    echo "python=$("$python" -c 'import platform; print(platform.python_version())')"
    echo "pip=$("$python" -m pip --version | cut -d ' ' -f 2)"
    echo "uv=$(command -v uv >/dev/null && uv --version || echo absent)"
    echo "toolkit_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "toolkit_uncommitted_paths=$(git status --porcelain 2>/dev/null | wc -l)"
    echo "app=$app"
    echo "old=$old"
    echo "new=$new"
    echo "started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$results/machine.txt"

# 1. The two sdists, from the package index.
for version in "$old" "$new"; do
    timed "download-$version" "$python" -m pip download --no-deps \
        --no-binary :all: "$app==$version" -d "$work/sdists" || {
        echo "error: pip download of $app==$version failed." \
            "See $results/download-$version.err" >&2
        exit 1
    }
done
sha256sum "$work"/sdists/* | sed "s#$work/##" >"$results/sdists.sha256"

# 2. Unpack, and derive each requirements.txt from PKG-INFO.
for version in "$old" "$new"; do
    sdist=$(ls "$work"/sdists/*"-$version".tar.gz 2>/dev/null) || {
        echo "error: no .tar.gz sdist of $app $version in $work/sdists" >&2
        exit 1
    }
    mkdir -p "$work/src/$version"
    tar -xzf "$sdist" -C "$work/src/$version"
    tree=$(ls -d "$work/src/$version"/*/)
    echo "${tree%/}" >"$work/src/$version.path"
    timed "requirements-$version" "$python" scripts/requirements_from_sdist.py \
        "$sdist" -o "$work/requirements/$version.txt" || exit 1
    cp "$work/requirements/$version.txt" "$results/requirements-$version.txt"
done

# 3. Publish both releases and serve them on loopback.
for version in "$old" "$new"; do
    timed "publish-$version" "$python" -m codemate_setup.publish \
        "$(cat "$work/src/$version.path")" --version "$version" \
        --to "$work/releases" --requirements "$work/requirements/$version.txt" \
        --entry-point "$entry_point" || exit 1
done
cp "$work/releases/$new/manifest.json" "$results/manifest-$new.json"

"$python" -m codemate_setup.middleware "$work/releases" --host 127.0.0.1 --port 0 \
    >"$results/middleware.url" 2>"$results/middleware.log" &
middleware_pid=$!
for _ in $(seq 1 50); do
    [ -s "$results/middleware.url" ] && break
    sleep 0.2
done
url=$(head -n 1 "$results/middleware.url")
case "$url" in
http://127.0.0.1:*) ;;
*)
    echo "error: the middleware did not print a loopback URL, got '$url'" >&2
    exit 1
    ;;
esac

# 4. Install OLD into a fresh home, then update to NEW.
log_slice "install-$old" "$python" setup_orchestrator.py "$old" \
    --middleware-url "$url" --home "$home" --yes --json
cp "$home/setup_state.json" "$results/state-install-$old.json" || failed=1
cp "$home/installed.json" "$results/installed-$old.json" || failed=1
"$home/environment/bin/python" -m pip list --format=freeze \
    >"$results/packages-after-install.txt" 2>/dev/null || failed=1

log_slice "update-$new" "$python" setup_orchestrator.py "$new" \
    --middleware-url "$url" --home "$home" --yes --json
cp "$home/setup_state.json" "$results/state-update-$new.json" || failed=1
cp "$home/installed.json" "$results/installed-$new.json" || failed=1
"$home/environment/bin/python" -m pip list --format=freeze \
    >"$results/packages-after-update.txt" 2>/dev/null || failed=1
cp "$home"/logs/*.log "$results/" || failed=1
(cd "$home" && find backups -type f | sort) >"$results/backups.txt" || failed=1

# A second verification must change nothing: no file in the environment or the
# app folder may be newer than this marker afterwards.
touch "$work/before-verify-again"
sleep 1
log_slice verify-again "$python" verification_env.py --home "$home" \
    --middleware-url "$url" --json
find "$home/environment" "$home/app" -newer "$work/before-verify-again" \
    | sed "s#$work/##" >"$results/verify-again.changed-paths.txt"

# The installed tree must equal the published NEW release, byte for byte, and
# with the same permission modes.
step diff-app diff -r "$home/app" "$work/releases/$new/files"
(cd "$home/app" && find . -type f -printf '%m %p\n' | sort) >"$results/modes-app.txt"
(cd "$work/releases/$new/files" && find . -type f -printf '%m %p\n' | sort) \
    >"$results/modes-release.txt"
step diff-modes diff "$results/modes-app.txt" "$results/modes-release.txt"
"$python" setup_tracker.py --home "$home" >"$results/tracker.txt" 2>&1 || failed=1
stop_middleware

# 5. Run the application from its environment. HTTPIE_CONFIG_DIR turns off
# httpie's update check, which would contact packages.httpie.io, and
# PYTHONDONTWRITEBYTECODE keeps __pycache__ out of the installed tree.
mkdir -p "$work/app-config"
echo '{"disable_update_warnings": true}' >"$work/app-config/config.json"
app_python=(env PYTHONPATH="$home/app" PYTHONDONTWRITEBYTECODE=1
    HTTPIE_CONFIG_DIR="$work/app-config" "$home/environment/bin/python")
if [ -n "$app_module" ]; then
    step app-version "${app_python[@]}" -m "$app_module" --version
fi
if [ "$app" = httpie ]; then
    # --offline builds and prints the request without sending it. strace, when
    # present, records every connect() the process makes.
    tracer=()
    if command -v strace >/dev/null; then
        tracer=(strace -f -qq -e trace=connect -o "$results/app-offline.strace")
    fi
    step app-offline "${tracer[@]}" "${app_python[@]}" -m httpie --offline \
        --ignore-stdin POST 127.0.0.1:9/echo hello=world
fi
step diff-app-after-run diff -r "$home/app" "$work/releases/$new/files"

"$python" scripts/real_world_summary.py "$work" >"$results/summary.md" || failed=1
echo "results: $results (summary: $results/summary.md)"
exit "$failed"
