#!/usr/bin/env bash
# Build dist/lambda.zip: the web tier (deploy/lambda/handler.py) for AWS Lambda, python3.12 on x86_64.
# Function handler: `handler.handler`. Build outputs (build/, dist/) are git-ignored.
#
#   deploy/lambda/package.sh            build build/lambda/ and dist/lambda.zip, print their sizes
#   deploy/lambda/package.sh --dry-run  print the requirements the zip would install; build nothing
#
# Environment: UV (the uv binary; default .tools/bin/uv, as `make` bootstraps it, else uv on PATH),
# LAMBDA_PYTHON_VERSION (3.12), LAMBDA_PLATFORM (x86_64-manylinux2014: uv's name for pip's
# manylinux2014_x86_64), LAMBDA_COMPILE_PYTHON (an interpreter of that version, to precompile; default
# python3.12 when it runs). Downloads wheels from PyPI (nothing else); `--dry-run` needs no network.
#
# What is left out, and how. The web tier never imports CrewAI (only `python -m bot worker` does; the test
# tests/integration/test_lambda.py drives this handler and checks both that `crewai` is never imported and
# that every distribution it loads is in this list). CrewAI and what only it pulls in are most of the
# environment (~1 GB installed; a Lambda zip may unpack to 250 MB). The list comes from uv.lock with
# `uv export --frozen --prune crewai`: uv removes crewai from the lock's dependency graph, then every package
# that nothing else still requires, so a package that both crewai and the web tier need (pydantic, httpx)
# stays. `--frozen` means no resolution at all: the zip gets exactly the versions the tests ran with (a
# `uv pip compile` of the dependencies minus crewai would resolve afresh and could pick others). The result is
# checked below against packages known to come only with crewai. uvicorn is pruned the same way: on Lambda,
# API Gateway and Mangum are the server (`python -m bot serve` is the only importer of uvicorn), and it would
# bring uvloop, watchfiles, httptools and websockets (~20 MB unpacked).
#
# Installing: `uv pip install --target`, not `pip install --target --platform --python-version`. pip's
# --python-version only selects wheel tags and checks Requires-Python; it evaluates environment markers with
# the interpreter it runs on, and the lock has pairs such as `deprecated==1.3.1 ; python_full_version <
# '3.12'` / `deprecated==3.0.1 ; python_full_version >= '3.12'`. uv evaluates markers for the target
# (--python-version, --python-platform). `--only-binary :all:`: nothing is compiled for the wrong platform;
# `--no-deps`: the export is the whole closure, nothing is resolved again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."  # the repository root, wherever this is run from

PYTHON_VERSION="${LAMBDA_PYTHON_VERSION:-3.12}"
PLATFORM="${LAMBDA_PLATFORM:-x86_64-manylinux2014}"
BUILD="build/lambda"
ZIP="dist/lambda.zip"
# Packages that come only with crewai (a sample of its heaviest); any of them here means the pruning failed.
CREWAI_ONLY="crewai|crewai-[a-z-]+|litellm|chromadb|openai|lancedb|onnxruntime|tokenizers|huggingface-hub|numpy|pyarrow|instructor|opentelemetry-sdk"

die() {
    echo "package.sh: $*" >&2
    exit 1
}

dry_run=0
case "${1:-}" in
    "") ;;
    --dry-run) dry_run=1 ;;
    -h | --help)
        sed -n '2,6p' "$0"
        exit 0
        ;;
    *) die "unknown argument: $1 (expected --dry-run or nothing)" ;;
esac

uv="${UV:-}"
if [[ -z "$uv" ]]; then
    if [[ -x .tools/bin/uv ]]; then
        uv=.tools/bin/uv
    elif command -v uv >/dev/null; then
        uv="$(command -v uv)"
    else
        die "uv not found: run \`make sync\` (it bootstraps .tools/bin/uv) or set UV=/path/to/uv"
    fi
fi

# name==version [; marker], one a line: the locked runtime dependencies minus crewai, uvicorn and what only they need.
requirements="$(
    "$uv" export --frozen --no-dev --no-hashes --no-emit-project --no-header --no-annotate \
        --prune crewai --prune uvicorn |
        grep -v -E '^\s*(#|$)'
)" || die "uv export failed"
if leftovers="$(grep -i -E "^($CREWAI_ONLY)==" <<<"$requirements")"; then
    die "these come only with crewai but are still required: $(tr '\n' ' ' <<<"$leftovers")"
fi
grep -q -i '^mangum==' <<<"$requirements" || die "mangum is not among the runtime dependencies (pyproject.toml)"

if ((dry_run)); then
    echo "$requirements"
    exit 0
fi

command -v zip >/dev/null || die "zip not found (apt-get install zip)"
rm -rf "$BUILD" "$ZIP"
mkdir -p "$BUILD" "$(dirname "$ZIP")"
echo "$requirements" >build/lambda-requirements.txt
echo "installing $(wc -l <build/lambda-requirements.txt) packages for python $PYTHON_VERSION on $PLATFORM"
UV_PYTHON_DOWNLOADS=never "$uv" pip install --quiet --target "$BUILD" --no-deps --only-binary :all: \
    --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" -r build/lambda-requirements.txt

# The service itself, as sources (the web tier imports reviewer/ for `/chat?fast=true`), and the entry point.
cp -R bot reviewer "$BUILD"/
cp deploy/lambda/handler.py "$BUILD"/handler.py
find "$BUILD"/bot "$BUILD"/reviewer -name __pycache__ -type d -prune -exec rm -rf {} +
# Enough metadata for importlib.metadata.version("ai-dev-companion"): `GET /` reports the real version.
version="$("$uv" version --short --frozen)"
dist_info="$BUILD/ai_dev_companion-$version.dist-info"
mkdir -p "$dist_info"
printf 'Metadata-Version: 2.1\nName: ai-dev-companion\nVersion: %s\n' "$version" >"$dist_info/METADATA"
: >"$dist_info/RECORD"

# /var/task is read-only: without .pyc files every cold start compiles every module again. They can only be
# made by the target's Python; unchecked-hash because zip keeps mtimes to 2 s only (timestamps would not match).
compiler="${LAMBDA_COMPILE_PYTHON:-python$PYTHON_VERSION}"
if "$compiler" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$PYTHON_VERSION'.split('.'))))" \
    >/dev/null 2>&1; then
    "$compiler" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$BUILD" >/dev/null
else
    echo "note: no python$PYTHON_VERSION to run (set LAMBDA_COMPILE_PYTHON): no .pyc, cold starts compile the sources"
fi

(cd "$BUILD" && zip -q -r -X -9 "../../$ZIP" .)

unpacked_mb=$(du -sm "$BUILD" | cut -f1)
zipped_bytes=$(stat -c %s "$ZIP")
echo "$ZIP: $((zipped_bytes / 1024 / 1024)) MB ($zipped_bytes bytes), $unpacked_mb MB unpacked"
((zipped_bytes <= 50 * 1024 * 1024)) || echo "note: over 50 MB zipped: upload it through S3, not directly"
((unpacked_mb < 250)) || die "over Lambda's 250 MB unpacked limit"
