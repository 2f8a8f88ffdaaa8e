#!/usr/bin/env bash
# Set up the environment (.venv) when needed, then run the study's notebooks in order
# through papermill (default), or the test suite (--tests).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./run_all.sh [--profile smoke|default|full] [--only PATTERN] [--setup-only] [--tests [PYTEST ARGS...]]

  (no flags)        set up .venv if missing, then run notebooks/NN_*.ipynb in order at the
                    default profile; outputs go to results/<profile>/
  --profile P       smoke (seconds per notebook), default (2-core laptop, < 1 h) or full (GPU)
  --only PATTERN    run only the notebooks whose file name contains PATTERN (e.g. 01_)
  --setup-only      create/update .venv and the Jupyter kernel, run nothing
  --tests [ARGS]    run the test suite (pytest) instead of the notebooks; ARGS go to pytest
  -h, --help        this help

Environment: CRYOLIB_PYTHON selects the interpreter that creates .venv (default python3).
USAGE
}

PROFILE=default
ONLY=""
MODE=notebooks
PYTEST_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --only) ONLY="${2:?--only needs a value}"; shift 2 ;;
    --setup-only) MODE=setup; shift ;;
    --tests) MODE=tests; shift; PYTEST_ARGS=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in smoke|default|full) ;; *) echo "run_all.sh: unknown profile '$PROFILE' (smoke, default or full)" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
export MPLBACKEND=agg PYTHONUNBUFFERED=1
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.cryolib-install-stamp"

# detectron2 (the ViTDet picker, cryolib/pick/detector.py) is not on PyPI. Take its wheel from the
# first folder that has one: $CRYOLIB_WHEELS, ../shared/wheels, then the copy in third_party/wheels/
# (built from the official source; see its README). Without a usable wheel, build the same commit
# from GitHub; if that fails too (no network), say so and go on: only the detector is unavailable.
DETECTRON2_SOURCE="detectron2 @ git+https://github.com/facebookresearch/detectron2@02b5c4e295e990042a714712c21dc79b731e8833"
install_detectron2() {
  local dir
  for dir in "${CRYOLIB_WHEELS:-}" "$ROOT/../shared/wheels" "$ROOT/third_party/wheels"; do
    [[ -n "$dir" ]] && compgen -G "$dir/detectron2-*.whl" >/dev/null || continue
    if "$PY" -m pip install --quiet --disable-pip-version-check --find-links "$dir" -e ".[detector]"; then
      echo "==> detectron2: installed from the wheel in $dir"
      return 0
    fi
    echo "==> detectron2: the wheel in $dir does not install here; trying the next source" >&2
  done
  if "$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation "$DETECTRON2_SOURCE"; then
    echo "==> detectron2: built from its official source (GitHub)"
  else
    echo "==> WARNING: detectron2 is not installed (no usable wheel, and building from GitHub failed):" \
         "the 'detector' picker and notebook 07's detector rows are unavailable; everything else works" >&2
  fi
}

# The environment takes about 7 GB (torch's CUDA build is 5.5 GB of it). A full disk makes pip fail
# half-way with "[Errno 28] No space left on device"; say so before starting.
NEED_GB=8
check_disk() {
  local free_kb
  free_kb="$(df -Pk "$1" | awk 'NR == 2 {print $4}')"
  if [[ -n "$free_kb" ]] && (( free_kb < NEED_GB * 1024 * 1024 )); then
    echo "==> WARNING: $(( free_kb / 1024 )) MB free on the disk of $1; setting up .venv needs about" \
         "${NEED_GB} GB (torch alone is 5.5 GB). Free some space if pip fails with 'No space left on device'." >&2
  fi
}

setup_env() {
  local want
  want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    return 0
  fi
  echo "==> setting up $VENV (first run: a few minutes; torch is a large download where it is not on local disk)"
  check_disk "$ROOT"
  [[ -x "$PY" ]] || "${CRYOLIB_PYTHON:-python3}" -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
  install_detectron2
  "$PY" -m ipykernel install --sys-prefix --name cryolib --display-name "Python (cryolib)" >/dev/null
  echo "$want" > "$STAMP"
}

setup_env
case "$MODE" in
  setup) echo "==> environment ready: $VENV (Jupyter kernel 'cryolib'; open notebooks with .venv/bin/jupyter lab)"; exit 0 ;;
  tests) exec "$PY" -m pytest "${PYTEST_ARGS[@]}" ;;
esac

OUT="results/$PROFILE"
mkdir -p "$OUT/notebooks"
start=$(date +%s)
shopt -s nullglob
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$nb")"
  [[ -n "$ONLY" && "$name" != *"$ONLY"* ]] && continue
  echo "==> $name (profile $PROFILE)"
  t0=$(date +%s)
  "$VENV/bin/papermill" --kernel cryolib --cwd notebooks --progress-bar -p profile "$PROFILE" "$nb" "$OUT/notebooks/$name"
  echo "    done in $(( $(date +%s) - t0 )) s"
done
echo "==> all notebooks done in $(( $(date +%s) - start )) s; results in $OUT/"
