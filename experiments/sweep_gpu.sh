#!/usr/bin/env bash
# The learning-curve sweeps of issue 10 as run on one H100, 12 processes at a time (results: results/sweep*_h100.jsonl).
#   python experiments/inmemory.py dump clips.npz      # first, on a machine with the shards
#   SWEEP=1 bash experiments/sweep_gpu.sh clips.npz out.jsonl   # 3000 steps, validation every 250 (stopped at 450 s)
#   SWEEP=2 bash experiments/sweep_gpu.sh clips.npz out.jsonl   # 1000 steps, validation every 100
# Sweep 1 validated on 4 augmentations per test clip (24 samples; sweep_gpu.py had range(4)), sweep 2 on 8 (48).
set -u
NPZ=$1; R=$2; export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ "${SWEEP:-2}" = 1 ]; then
  S=3000; E=250; X='"loss.anneal_crossover": 0.4'
  cfgs=('L_def|gimbal|{}' "L_x04|gimbal|{$X}" 'L_noann|gimbal|{"loss.anneal": false}'
        "L_mean_x04|gimbal|{\"model.kpn_init\": \"mean\", $X}" "L_lr1e3_x04|gimbal|{\"train.lr\": 0.001, $X}"
        'L_w61|gimbal|{"augment.window_frames": 61}' "L_w61_x04|gimbal|{\"augment.window_frames\": 61, $X}"
        "L_big_x04|gimbal|{\"model.kpn_base_channels\": 16, \"model.kpn_depth\": 3, $X}"
        'U_def|gimbal_uniform|{}' "U_x04|gimbal_uniform|{$X}" "K_x04|kpn|{$X}"
        "L_bs16_x04|gimbal|{\"train.batch_size\": 16, $X}")
else
  S=1000; E=100; N='"loss.anneal": false'; X='"loss.anneal_crossover": 0.1'
  cfgs=("L_noann|gimbal|{$N}" "U_noann|gimbal_uniform|{$N}" "K_noann|kpn|{$N}"
        "L_noann_lr1e3|gimbal|{$N, \"train.lr\": 0.001}" "L_x01|gimbal|{$X}" "U_x01|gimbal_uniform|{$X}"
        "K_x01|kpn|{$X}" "L_noann_mean|gimbal|{$N, \"model.kpn_init\": \"mean\"}"
        "U_noann_mean|gimbal_uniform|{$N, \"model.kpn_init\": \"mean\"}"
        "L_noann_w121|gimbal|{$N, \"augment.window_frames\": 121}"
        "L_noann_big|gimbal|{$N, \"model.kpn_base_channels\": 16, \"model.kpn_depth\": 3}"
        "L_noann_bs8|gimbal|{$N, \"train.batch_size\": 8}")
fi
for c in "${cfgs[@]}"; do
  python experiments/sweep_gpu.py cuda $S $E "$R" "$c" "$NPZ" > "$R.$(echo "$c" | cut -d'|' -f1).log" 2>&1 &
done
wait
