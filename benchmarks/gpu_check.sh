#!/usr/bin/env bash
# The prepared GPU check of the DRACO issue: pretraining throughput (tiles/s) and the fraction of peak bf16 FLOP/s
# on one GPU, at the full profile's sizes (ViT-B/L encoders, 256 px crops, the paper's 64 crops per GPU per step)
# and at the default profile's CPU stand-ins (for the ratio to the CPU rows in
# results/default/benchmarks/pretrain_throughput.md). About 2 minutes on an H100.
#
# On a lent device machine (the `device` tool runs it from the repository root): the machine's python3 has torch,
# timm, pandas, scipy and yaml but not mrcfile or starfile. Fetch their wheels here first, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl mrcfile starfile
# then run `bash benchmarks/gpu_check.sh` with `.whl` carried. Results go to $OUT (the device tool's folder that
# comes back) or, without it, to results/: <root>/full/benchmarks/pretrain_throughput.{md,json} and
# <root>/default/benchmarks/pretrain_throughput_gpu.{md,json}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cryolib_site .whl/*.whl
  export PYTHONPATH=/tmp/cryolib_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
RESULTS=${OUT:-results}
"$PY" -c "import torch; print('torch', torch.__version__, 'GPU', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
"$PY" benchmarks/pretrain_throughput.py --profile full --device cuda --batch-size 64 --steps 60 --num-workers 8 \
  --results "$RESULTS"
"$PY" benchmarks/pretrain_throughput.py --profile default --device cuda --steps 60 --num-workers 4 --no-paper \
  --name pretrain_throughput_gpu --results "$RESULTS"
