#!/usr/bin/env bash
# Create (once) the separate venv that converts PyTorch models to LiteRT with litert-torch.
#
# litert-torch pulls jax, transformers, ai-edge-quantizer and its own torch range, so it lives in its own venv
# (default runs/litert-venv) instead of the project's .venv. torch is pinned to the project's version (2.13.0,
# the local CPU wheel) so that pip does not fetch a CUDA build. Idempotent: a stamp file records the pinned
# versions and a rerun with the same versions does nothing.
#
# Usage: bash benchmarks/setup_litert.sh [VENV_DIR]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/runs/litert-venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
LITERT_TORCH_VERSION="${LITERT_TORCH_VERSION:-0.10.0}"
AI_EDGE_LITERT_VERSION="${AI_EDGE_LITERT_VERSION:-2.3.0}"
WANT="torch==$TORCH_VERSION litert-torch==$LITERT_TORCH_VERSION ai-edge-litert==$AI_EDGE_LITERT_VERSION"
STAMP="$VENV/.stamp-litert"

# cheap check (importing litert_torch takes tens of seconds): the stamp matches and the packages are there
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && compgen -G "$VENV/lib/python3*/site-packages/litert_torch" >/dev/null; then
    echo "litert venv ready: $VENV ($WANT)"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q $WANT
"$VENV/bin/python" -c "import litert_torch, ai_edge_litert.interpreter, torch; print('litert venv:', torch.__version__)"
echo "$WANT" >"$STAMP"
echo "litert venv ready: $VENV ($WANT)"
