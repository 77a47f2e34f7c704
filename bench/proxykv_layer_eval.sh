#!/usr/bin/env bash
# bench/proxykv_layer_eval.sh: ProxyKV against KVzip and the baselines at layer level, with the main mapper
# (models/mapper), the plain-MSE and linear ablations and the earlier default-loss mapper, on the held-out files of
# bench/family_eval.sh --out build/fe-layer (run its family, methods and mapper stages first; the ablation mappers
# come from train-mapper with models/configs/mapper.json, the loss terms set as in family_eval.sh, out_dir
# build/fe-layer/ablations2/NAME). Both lengths run side by side, one thread each.
# proxykv_globalloss is the mapper of commit e57a217, trained with the default (global-level) loss because a
# top-level "loss" was ignored: `git show e57a217:models/mapper/F > build/fe-layer/mapper-globalloss/F` for F in
# features.json, mapper.json, mapper.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
o=build/fe-layer
maps="proxykv=models/mapper,proxykv_mse=$o/ablations2/proxykv_mse,proxykv_linear=$o/ablations2/proxykv_linear,proxykv_globalloss=$o/mapper-globalloss"
for L in 512 1024; do
  OPENBLAS_NUM_THREADS=1 build/bin/proxykv eval --target $o/models/target --proxy $o/models/proxy --mapper "$maps" \
    --iam $o/iam.json --data $o/data/methods-$L.jsonl \
    --methods full,kvzip,snapkv,h2o,proxy_direct,kvzip_iam,proxykv,proxykv_mse,proxykv_linear,proxykv_globalloss \
    --ratios 0.1,0.2,0.3,0.5,0.7 --level layer --out $o/results/proxykv2-$L.json --plot $o/results/proxykv2-$L.png \
    --threads 1 > $o/proxykv2-$L.log 2>&1 &
done
wait
