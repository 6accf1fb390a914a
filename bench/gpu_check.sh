#!/usr/bin/env bash
# The GPU check in one command, for a borrowed H100/H200 whose own image has torch, Lightning
# and transformers but no Hydra, DVC, W&B or datasets, and no network. Two steps:
#
#   bench/gpu_check.sh prepare [--no-wheels]   # here: wheels + smoke token shards -> .gpucheck/
#   bench/gpu_check.sh run [--cpu] [--out DIR] # there, with .gpucheck carried (a few MB)
#
# `run` reports, each part on its own so one failure does not hide the rest:
#   stages   the smoke training stages (word2vec, bert, gpt) with trainer=gpu, logger=none
#   fsdp     the bert and gpt smoke stages with trainer=fsdp on one GPU
#   mfu_bN   gpt=gpt2_124m, bf16 + torch.compile, micro-batch N (64: the preset's, and 16):
#            tokens/s and MFU against a bf16 matmul peak measured in the same run
#            (bench/bench_gpt.py mfu)
#   bert     bert=bert_base tokens/s against HF BertForMaskedLM on the same batches
#            (bench/bench_bert.py), bf16 autocast for both
# and writes DIR/gpu_check.json (default gpu_check_out/) plus one log per part. --cpu is the
# dry run of every part on this machine's CPU with tiny sizes (tests/test_gpu_check.py).
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=${GPU_CHECK_DIR:-.gpucheck}
PY=${PYTHON:-python3}
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1

# what the device image lacks, at the versions this project runs with (gensim: Word2Vec's export)
WHEELS="hydra-core omegaconf antlr4-python3-runtime datasets dill multiprocess gensim smart_open"

pinned() {  # the installed version of $1 (what this project ran with)
    "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"
}

prepare() {
    local wheels=1
    [[ ${1:-} == --no-wheels ]] && wheels=0
    rm -rf "$CARRY" && mkdir -p "$CARRY"
    if ((wheels)); then
        mkdir -p "$CARRY/wheels"
        for name in $WHEELS; do
            # for the device's python (3.12); antlr4's 4.9.3 (omegaconf's pin) is published as
            # a source archive only, so it is built here (pure Python)
            local spec
            spec="$name==$(pinned "$name")"
            "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
                --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d "$CARRY/wheels" "$spec" \
                2>/dev/null || "$PY" -m pip wheel -q --no-deps -w "$CARRY/wheels" "$spec" || return
        done
    fi
    local data
    data=$(realpath "$CARRY")/data
    local common=(experiment=smoke logger=none "paths.data=$data" "hydra.run.dir=$CARRY/hydra")
    "$PY" pipelines/prepare_corpus.py "${common[@]}" || return
    for tok in bpe wordpiece; do  # what gpt and bert read; word2vec reads the corpus
        "$PY" pipelines/train_tokenizer.py "${common[@]}" "+only=$tok" || return
        "$PY" pipelines/encode.py "${common[@]}" "+only=$tok" || return
    done
    rm -rf "$CARRY/hydra"
    du -sh "$CARRY"
}

# run one part: NAME SECONDS COMMAND...; its output to $OUT_DIR/NAME.log, status to parts.txt
part() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name: $*"
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "$name $rc $((SECONDS - start))" >>"$OUT_DIR/parts.txt"
    echo "   rc=$rc in $((SECONDS - start)) s"
    ((rc == 0)) || tail -n 15 "$OUT_DIR/$name.log"
}

run() {
    local cpu=0
    OUT_DIR=gpu_check_out
    while (($#)); do
        case $1 in
            --cpu) cpu=1 ;;
            --out) OUT_DIR=$2 && shift ;;
            *) echo "gpu_check.sh run: unknown option $1" >&2 && return 2 ;;
        esac
        shift
    done
    [[ -d $CARRY/data ]] || { echo "no $CARRY/data: run 'bench/gpu_check.sh prepare' first" >&2; return 2; }
    mkdir -p "$OUT_DIR" && OUT_DIR=$(realpath "$OUT_DIR") && : >"$OUT_DIR/parts.txt"
    if compgen -G "$CARRY/wheels/*.whl" >/dev/null && ! "$PY" -c "import hydra, datasets, gensim" 2>/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpucheck-site \
            "$CARRY"/wheels/*.whl || return
        export PYTHONPATH=/tmp/gpucheck-site
    fi
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "import torch, lightning, transformers; print('torch', torch.__version__, 'lightning', lightning.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())" | tee "$OUT_DIR/env.txt"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT_DIR/env.txt"

    local work=$OUT_DIR/work data
    data=$(realpath "$CARRY/data")
    local trainer=(trainer=gpu) fsdp=(trainer=fsdp) mfu=(--preset gpt2_124m --steps 60 --warmup 15)
    local micro_batches=(64 16)  # gpt2_124m's micro-batch, and a 24 GB card's
    local bert=(--preset bert_base --batch-size 128 --steps 20 --rounds 2 --warmup 5)
    if ((cpu)); then
        trainer=(trainer=cpu trainer.precision=bf16-mixed)  # autocast as on the GPU
        fsdp=(trainer=fsdp trainer.accelerator=cpu trainer.devices=1 fsdp.param_dtype=float32)
        mfu=(--cpu --preset smoke --steps 8 --warmup 2)
        micro_batches=(4)
        bert=(--preset smoke --batch-size 4 --steps 4 --rounds 1 --warmup 1)
    fi
    # a training stage: part NAME LIMIT "${stage[@]}" FAMILY WHERE OVERRIDES...
    local stage=(bash bench/gpu_check.sh train-stage "$data" "$work")
    for family in word2vec bert gpt; do
        part "stage_$family" 300 "${stage[@]}" "$family" stages "${trainer[@]}"
    done
    for family in bert gpt; do
        part "fsdp_$family" 300 "${stage[@]}" "$family" fsdp "${fsdp[@]}"
    done
    for batch in "${micro_batches[@]}"; do
        part "mfu_b$batch" 300 "$PY" bench/bench_gpt.py mfu "${mfu[@]}" --batch-size "$batch"
    done
    part bert 400 "$PY" bench/bench_bert.py "${bert[@]}"
    "$PY" - "$OUT_DIR" <<'EOF'
"""Collect every part's status and figures into gpu_check.json, and print it."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
report = {"env": out.joinpath("env.txt").read_text().strip().splitlines(), "parts": {}}
for line in out.joinpath("parts.txt").read_text().splitlines():
    name, rc, seconds = line.split()
    entry = {"ok": rc == "0", "rc": int(rc), "seconds": int(seconds)}
    group, _, family = name.partition("_")
    metrics = out / "work" / {"stage": "stages", "fsdp": "fsdp"}.get(group, "-") / "metrics"
    if group in ("stage", "fsdp"):
        if (metrics / "train" / f"{family}.json").is_file():
            entry["metrics"] = json.loads((metrics / "train" / f"{family}.json").read_text())
    elif rc == "0":  # a bench: its last JSON document
        lines = out.joinpath(f"{name}.log").read_text().splitlines()
        start = len(lines) - 1 - lines[::-1].index("{")
        entry["figures"] = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
    report["parts"][name] = entry
out.joinpath("gpu_check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
failed = [k for k, v in report["parts"].items() if not v["ok"]]
print("gpu_check: all parts passed" if not failed else f"gpu_check: FAILED {failed}")
sys.exit(1 if failed else 0)
EOF
}

# one smoke training stage: DATA WORK FAMILY WHERE OVERRIDES... (outputs under WORK/WHERE)
train_stage() {
    local data=$1 work=$2 family=$3 where=$4
    shift 4
    exec "$PY" pipelines/train.py experiment=smoke logger=none "family=$family" \
        "paths.data=$data" "paths.models=$work/$where/models" "paths.runs=$work/$where/runs" \
        "paths.metrics=$work/$where/metrics" "hydra.run.dir=$work/$where/hydra/$family" "$@"
}

case ${1:-} in
    train-stage) shift && train_stage "$@" ;;
    prepare) shift && prepare "$@" ;;
    run) shift && run "$@" ;;
    *) echo "usage: bench/gpu_check.sh prepare [--no-wheels] | run [--cpu] [--out DIR]" >&2 && exit 2 ;;
esac
