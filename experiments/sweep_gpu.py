"""Learning curves of one model variant on in-memory clips: validation PSNR of the network and of the exposure-normalized
middle frame of its own burst (the floor), every ``every`` steps; run by ``experiments/sweep_gpu.sh`` (issue 10).

    python experiments/sweep_gpu.py cuda STEPS EVERY results.jsonl 'name|variant|{"loss.anneal": false}' clips.npz

Validation: each test clip of the ``.npz`` with 8 fixed augmentations (sweep 1 of the README table used 4), fixed noise.
Writes the curve so far to ``results.jsonl.<name>.part`` at every validation, and the final record to ``results.jsonl``.
"""
import json, sys, time, os
import numpy as np, torch, yaml
sys.path.insert(0, os.getcwd())
import types
for _m in ("av", "webdataset", "dvclive"):  # a GPU box without the video stack: the sweep reads an .npz
    try:
        __import__(_m)
    except ImportError:
        sys.modules[_m] = types.ModuleType(_m)
from gimbal.config import parse_config  # noqa: E402
from gimbal.data.irradiance import make_irradiance
from gimbal.system import GimbalSystem
from gimbal.evaluate import middle_frame_image
from gimbal.metrics import psnr

def run(name, variant, overrides, steps, every, dev, data, out):
    p = yaml.safe_load(open("params.yaml"))
    p["train"]["steps"] = steps
    for k, v in overrides.items():
        g, key = k.split(".", 1); p[g][key] = v
    torch.manual_seed(0)
    system = GimbalSystem.from_params(p, variant).to(dev)
    system.sensor.set_seed(1)
    aug = parse_config(p).augment; cam = system.sensor.camera
    lr = p["train"]["lr"]; elr = p["train"]["exposure_lr"] or lr
    ep = [q for q in system.sensor.parameters() if q.requires_grad]
    groups = [{"params": list(system.net.parameters()), "lr": lr}] + ([{"params": ep, "lr": elr}] if ep else [])
    opt = torch.optim.Adam(groups)
    train = torch.from_numpy(data["train"]).to(dev); test = torch.from_numpy(data["val"]).to(dev)  # choose on val
    vgen = torch.Generator().manual_seed(10000)
    val = [make_irradiance(test[i:i+3], aug, cam, 1, vgen) for i in range(0, len(test), 3) for _ in range(8)]
    gen = torch.Generator().manual_seed(7919); pick = torch.Generator().manual_seed(3)
    bs = p["train"]["batch_size"]; curve = []; t0 = time.time()
    def validate():
        system.eval(); g = torch.Generator(device=dev).manual_seed(5); a, b = [], []
        with torch.no_grad():
            for sc in val:
                o = system(sc.irradiance, 0, g, srgb=sc.srgb)
                a += psnr(o.image, o.target, reduction="none").tolist()
                b += psnr(middle_frame_image(system.sensor, o.burst, system.sensor.exposure.durations(torch.float64).to(dev).float(), system.display), o.target, reduction="none").tolist()
        system.train(); return sum(a)/len(a), sum(b)/len(b)
    for step in range(steps):
        idx = torch.randint(0, len(train), (bs,), generator=pick)
        with torch.inference_mode():
            sc = make_irradiance(train[idx], aug, cam, 1, gen, exposure=system.sensor.exposure)
        o = system(sc.irradiance.clone(), step, srgb=sc.srgb.clone())
        opt.zero_grad(set_to_none=True); o.loss.backward(); opt.step()
        if (step + 1) % every == 0 or step == 0:
            net, mid = validate(); curve.append((step + 1, round(net, 2), round(mid, 2)))
            with open(out + "." + name + ".part", "w") as f:
                f.write(json.dumps({"name": name, "secs": round(time.time()-t0), "exp_us": [round(x) for x in system.sensor.schedule_us()["durations_us"]], "curve": curve}) + "\n")
    sched = [round(x) for x in system.sensor.schedule_us()["durations_us"]]
    res = {"name": name, "variant": variant, "overrides": overrides, "steps": steps, "secs": round(time.time()-t0),
           "final_net": curve[-1][1], "final_mid": curve[-1][2], "exp_us": sched, "curve": curve}
    with open(out, "a") as f: f.write(json.dumps(res) + "\n")
    print(json.dumps(res), flush=True)

if __name__ == "__main__":
    dev = sys.argv[1]; steps = int(sys.argv[2]); every = int(sys.argv[3]); out = sys.argv[4]
    data = dict(np.load(sys.argv[6] if len(sys.argv) > 6 else "clips.npz"))
    name, variant, ov = sys.argv[5].split("|", 2)
    run(name, variant, json.loads(ov), steps, every, dev, data, out)
