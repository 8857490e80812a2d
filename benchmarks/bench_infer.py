"""Time the reconstruction network on one burst (e.g. 720p) and print the figures.

    python benchmarks/bench_infer.py                      # paper-scale net, 1280x720, n=3, on CUDA if present
    python benchmarks/bench_infer.py --size 256 256 --scale embedded --device cpu

Reports seconds per merged image (median of --repeats after a warm-up) and, on CUDA, the peak
GPU memory. The weights are random: the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gimbal.models.gimbal import GimbalNet

SCALES = {
    "paper": {"flow_levels": 4, "kpn_base_channels": 64, "kpn_depth": 4},
    "embedded": {"flow_levels": 3, "kpn_base_channels": 8, "kpn_depth": 2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs=2, default=[1280, 720], metavar=("W", "H"))
    ap.add_argument("--n", type=int, default=3, help="burst length")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--scale", choices=sorted(SCALES), default="paper")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--half", action="store_true", help="autocast to float16 (CUDA)")
    args = ap.parse_args()

    device = torch.device(args.device)
    net = GimbalNet(n=args.n, channels=args.channels, **SCALES[args.scale]).to(device).eval()
    w, h = args.size
    burst = torch.rand(1, args.n, args.channels, h, w, device=device)
    params = sum(p.numel() for p in net.parameters())

    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device.type, enabled=args.half and device.type == "cuda"):
            net(burst)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run()  # warm-up
    times = [run() for _ in range(args.repeats)]
    print(f"device          : {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})")
    print(f"network         : {args.scale} scale, n={args.n}, {params / 1e6:.2f} M parameters")
    print(f"input           : {w}x{h}x{args.channels}, {'fp16 autocast' if args.half else 'fp32'}")
    print(f"seconds / image : median {statistics.median(times):.3f}, min {min(times):.3f} ({args.repeats} runs)")
    if device.type == "cuda":
        print(f"peak GPU memory : {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
