#!/usr/bin/env bash
# The GPU check of issue 12, one script for one device call: CUDA equality tests of minGRU /
# minLSTM, training throughput (cuDNN LSTM against the scan cells, bf16), and a short quality run
# of each cell. Writes JSON and logs under $OUT. Installs nothing: the device's own torch.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh   # corpus: gpu_data/tinyshakespeare.txt (carried)
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}
CORPUS=${CORPUS:-gpu_data/tinyshakespeare.txt}
MINUTES=${MINUTES:-0.5}
mkdir -p "$OUT"
PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$OUT/device.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_scan_cuda.py 2>&1 | tail -15 | tee "$OUT/tests.txt"
$PY benchmarks/throughput.py --quick --device cuda --dtypes bfloat16 --steps 31 \
    --batch-size 256 --seq-len 256 --json "$OUT/throughput_cuda.json" 2>&1 \
    | grep -v '^{' | tail -12 | tee "$OUT/throughput.txt"
for spec in "lstm 2" "mingru 4" "minlstm 3"; do
    set -- $spec
    $PY benchmarks/quality.py "$CORPUS" --minutes "$MINUTES" --out "/tmp/q_$1" \
        --json "$OUT/quality_$1.json" --device cuda --cell "$1" --layers "$2" \
        --eval-every-s 10 --quiet 2>&1 | tail -4 | tee -a "$OUT/quality.txt"
done
