"""Tests of the reconstruction network: flow (Fig. 4), KPN (Fig. 5), GimbalNet (eqs. 15, 17)."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
from torch import nn

from gimbal.config import parse_config
from gimbal.display import inverse_power_gamma, power_gamma, srgb_encode
from gimbal.errors import ParamError, ShapeError
from gimbal.models import KPN, FlowNet, GimbalNet, ModelConfig, apply_kernels, split_reference, warp

TINY = dict(flow_levels=2, kernel_size=3, kpn_base_channels=4, kpn_depth=2, flow_channels=(8, 8, 8))


pytestmark = pytest.mark.usefixtures("one_thread")


def _texture(b: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random texture ``(b, 1, size, size)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return kornia.filters.gaussian_blur2d(torch.rand(b, 1, size, size, generator=g), (7, 7), (1.5, 1.5))


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("use_flow", [True, False])
@pytest.mark.parametrize("size", [(16, 16), (13, 21)])
def test_gimbalnet_shapes(n, use_flow, size):
    h, w = size
    net = GimbalNet(n, channels=3, use_flow=use_flow, **TINY)
    out = net(torch.rand(2, n, 3, h, w))
    for image in (out.image, out.align_estimate, out.linear):
        assert image.shape == (2, 3, h, w)
        assert torch.isfinite(image).all()
    if use_flow:
        assert out.flows is not None and out.flows.shape == (2, n - 1, 2, h, w)
    else:
        assert out.flows is None
    assert net.kpn.frames == (2 * n - 1 if use_flow else n)


def test_gimbalnet_rejects_wrong_burst():
    net = GimbalNet(3, channels=3, **TINY)
    with pytest.raises(ShapeError, match="n=3"):
        net(torch.rand(1, 4, 3, 16, 16))
    with pytest.raises(ShapeError, match="C=3"):
        net(torch.rand(1, 3, 1, 16, 16))


def test_subnetworks_reject_indivisible_sizes():
    with pytest.raises(ShapeError, match="flow_levels"):
        FlowNet(3, levels=3)(torch.rand(1, 3, 1, 10, 16))
    with pytest.raises(ShapeError, match="kpn_depth"):
        KPN(3, kernel_size=3, base_channels=4, depth=2)(torch.rand(1, 3, 1, 16, 18))


def test_gradients_reach_flow_kpn_and_input():
    torch.manual_seed(0)
    net = GimbalNet(3, channels=3, **TINY)
    burst = (_texture(2, 16, 1).unsqueeze(1).expand(2, 3, 3, 16, 16) + 0.05 * torch.rand(2, 3, 3, 16, 16))
    burst = burst.clone().requires_grad_(True)
    out = net(burst)
    (out.image.mean() + out.align_estimate.mean()).backward()
    assert burst.grad is not None and burst.grad.abs().sum() > 0
    for name, p in net.kpn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the flow's last conv starts at zero, so at init only it gets gradient; it must get some
    last = net.flow.sub_cnn[-1]
    assert last.weight.grad.abs().sum() > 0 and last.bias.grad.abs().sum() > 0
    # once it is non-zero, every flow parameter receives gradient
    net.zero_grad()
    with torch.no_grad():
        last.weight.normal_(0, 1e-3)
    out = net(burst)
    (out.image.mean() + out.align_estimate.mean()).backward()
    for name, p in net.flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_identity_flow_at_init():
    burst = torch.rand(2, 5, 3, 16, 16)
    net = FlowNet(5, levels=3)
    flows = net(burst)
    assert torch.equal(flows, torch.zeros_like(flows))
    aligned, _ = net.align(burst)
    _, others = split_reference(burst)
    # grid_sample normalises pixel coordinates to [-1, 1], so identity holds to float rounding only
    torch.testing.assert_close(aligned, others, atol=1e-6, rtol=0)


def test_warp_constant_shift_is_translation():
    frames = torch.rand(1, 1, 2, 8, 9)
    flows = torch.zeros(1, 1, 2, 8, 9)
    flows[:, :, 0] = 2.0  # dx = +2: out(x, y) = in(x + 2, y)
    flows[:, :, 1] = -1.0  # dy = -1: out(x, y) = in(x, y - 1)
    out = warp(frames, flows)
    torch.testing.assert_close(out[..., 1:, :-2], frames[..., :-1, 2:], atol=1e-5, rtol=0)


def test_flow_net_learns_shift():
    """A short optimisation of the flow net on a shifted tiny burst reduces the warp error and
    recovers the true sub-pixel shifts."""
    torch.manual_seed(0)
    tex = _texture(4, 24, seed=0)
    true = torch.tensor([[1.0, -0.5], [0.0, 0.0], [-1.0, 0.5]])  # (dx, dy) that aligns frame i to the middle
    flows = (-true)[None, :, :, None, None].expand(4, 3, 2, 24, 24)  # frame_i(p) = tex(p - true_i)
    burst = warp(tex.unsqueeze(1).expand(4, 3, 1, 24, 24).contiguous(), flows.contiguous())[..., 4:20, 4:20]
    net = FlowNet(3, levels=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    ref, _ = split_reference(burst)
    errors = []
    for _ in range(150):
        aligned, _ = net.align(burst)
        loss = (aligned - ref.unsqueeze(1)).abs().mean()
        errors.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert errors[-1] < 0.4 * errors[0]
    with torch.no_grad():
        est = net(burst)[..., 4:12, 4:12].mean(dim=(-1, -2)).mean(dim=0)  # interior, batch-averaged
    torch.testing.assert_close(est, true[[0, 2]], atol=0.15, rtol=0)


def test_apply_kernels_delta_is_identity_and_shift():
    frames = torch.rand(2, 3, 3, 7, 8)
    k = 5
    delta = torch.zeros(2, 3, 3, k * k, 7, 8)
    delta[:, :, :, k * k // 2] = 1.0
    torch.testing.assert_close(apply_kernels(frames, delta), frames, atol=0, rtol=0)
    # a single one right of the centre picks the right neighbour: out[y, x] = in[y, x + 1]
    right = torch.zeros(2, 3, 1, k * k, 7, 8)  # C=1: shared across colours
    right[:, :, :, k * k // 2 + 1] = 1.0
    out = apply_kernels(frames, right)
    torch.testing.assert_close(out[..., :-1], frames[..., 1:], atol=0, rtol=0)
    torch.testing.assert_close(out[..., -1], frames[..., -1], atol=0, rtol=0)  # replicate border
    with pytest.raises(ShapeError):
        apply_kernels(frames, torch.zeros(2, 3, 3, 24, 7, 8))


class _FixedKernels(nn.Module):
    """Stand-in KPN returning given kernels, to check the merge of eqs. (15) and (17)."""

    def __init__(self, kernels: torch.Tensor, frames: int):
        super().__init__()
        self.kernels = kernels
        self.frames = frames
        self.multiple = 1

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.kernels


def test_merge_and_alignment_estimate_equations():
    """Eqs. (15) and (17) by brute force, pixel by pixel, from the paper's definitions (replicate borders):
    eq. 15, the mean over frames of each frame filtered with its per-pixel k x k kernel; eq. 17 without flow
    (every frame counts as aligned, so kappa / kappa_a = 1), the mean over frames of the frame times its
    kernel's sum."""
    torch.manual_seed(0)
    n, k, c, h, w = 3, 3, 2, 5, 6
    burst = torch.rand(1, n, c, h, w, dtype=torch.float64)
    kernels = torch.rand(1, n, c, k * k, h, w, dtype=torch.float64)
    net = GimbalNet(n, channels=c, use_flow=False, kernel_size=k, kpn_base_channels=4, kpn_depth=1).double()
    net.kpn = _FixedKernels(kernels, n)
    out = net(burst)
    merge = torch.zeros(c, h, w, dtype=torch.float64)
    align = torch.zeros(c, h, w, dtype=torch.float64)
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                total = 0.0
                for i in range(n):
                    for q in range(k * k):
                        yy = min(max(y + q // k - k // 2, 0), h - 1)
                        xx = min(max(x + q % k - k // 2, 0), w - 1)
                        total += float(kernels[0, i, ch, q, y, x]) * float(burst[0, i, ch, yy, xx])
                    align[ch, y, x] += float(kernels[0, i, ch, :, y, x].sum()) * float(burst[0, i, ch, y, x]) / n
                merge[ch, y, x] = total / n
    torch.testing.assert_close(out.linear[0], merge)  # eq. (15)
    torch.testing.assert_close(out.image[0], srgb_encode(merge))  # the default target's display curve
    torch.testing.assert_close(out.align_estimate[0], srgb_encode(align))  # eq. (17)


def test_kpn_init_is_near_identity():
    """Delta-biased head: an untrained KPN's merge is close to the mean of its input frames."""
    torch.manual_seed(0)
    net = GimbalNet(3, channels=1, use_flow=False, kernel_size=5, kpn_base_channels=4, kpn_depth=1)
    burst = torch.rand(1, 3, 1, 8, 8)
    out = net(burst)
    assert (out.linear - burst.mean(1)).abs().mean() < 0.1 * burst.mean()


def test_gamma_roundtrip_and_finite_gradient():
    x = torch.tensor([-0.01, 0.0, 1e-4, 1e-3, 0.02, 0.5, 1.0], requires_grad=True)
    y = power_gamma(x)
    torch.testing.assert_close(y[-2:], x[-2:].detach() ** (1 / 2.2))
    torch.testing.assert_close(inverse_power_gamma(y), x.detach(), atol=1e-6, rtol=1e-5)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad > 0).all()
    assert (torch.diff(y) > 0).all()  # monotonic


def test_from_config():
    cfg = parse_config({"model": {"flow_levels": 2, "kernel_size": 3, "kpn_base_channels": 4,
                                             "kpn_depth": 1, "use_flow": True}}).model
    net = GimbalNet.from_config(cfg, 5)
    assert net.n == 5 and net.flow is not None and net.flow.levels == 2 and net.channels == 1
    assert net.kpn.kernel_size == 3 and net.kpn.depth == 1 and net.kpn.frames == 9
    net = GimbalNet.from_config(ModelConfig(use_flow=False), 3)
    assert net.n == 3 and net.flow is None and net.kpn.frames == 3
    with pytest.raises(ParamError, match="kernel_size"):
        _ = parse_config({"model": {"kernel_size": 4}}).model
    with pytest.raises(ParamError, match="use_flow"):
        _ = parse_config({"model": {"use_flow": "yes"}}).model
    with pytest.raises(ParamError, match="did you mean 'learn_exposure'"):
        _ = parse_config({"model": {"learn_exposur": False}}).model


def test_eq17_uses_reference_and_aligned_frames_only():
    """Eq. (17) with the flow on: (kappa / kappa_a) (1/F) sum over {reference, aligned frames} of kbar_i Y_i,
    checked pixel by pixel against the kernels and frames the KPN actually saw."""
    torch.manual_seed(0)
    n = 3
    net = GimbalNet(n, channels=1, flow_levels=2, kernel_size=3, kpn_base_channels=4, kpn_depth=1,
                    kpn_init="mean", target="sensor").eval()  # 2.2 power curve: no clipping at 1
    with torch.no_grad():  # move away from the init: kernels differ per frame and pixel, the flow is non-zero
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    seen = {}
    net.kpn.register_forward_hook(lambda m, inp, out: seen.update(frames=inp[0].detach(), kernels=out.detach()))
    burst = torch.rand(1, n, 1, 8, 8) + 0.5
    with torch.no_grad():
        out = net(burst)
    frames, kernels = seen["frames"], seen["kernels"]
    f = frames.shape[1]
    assert f == 2 * n - 1
    aligned_set = [n // 2] + list(range(n, f))  # the normalized reference and the n-1 warped frames
    expected = torch.zeros(8, 8, dtype=torch.float64)
    for y in range(8):
        for x in range(8):
            kbar = [float(kernels[0, i, 0, :, y, x].sum()) for i in range(f)]
            kappa, kappa_a = sum(kbar), sum(kbar[i] for i in aligned_set)
            acc = sum(kbar[i] * float(frames[0, i, 0, y, x]) for i in aligned_set)
            expected[y, x] = kappa / kappa_a * acc / f
    torch.testing.assert_close(out.align_estimate[0, 0].double(), power_gamma(expected), rtol=1e-4, atol=1e-5)


def test_kpn_reference_init_returns_the_middle_frame() -> None:
    torch.manual_seed(0)
    for use_flow in (True, False):
        net = GimbalNet(n=3, channels=3, flow_levels=2, kpn_base_channels=4, kpn_depth=1, use_flow=use_flow,
                        kpn_init="reference", flow_channels=(8, 8, 8))
        net.kpn.head.weight.data.zero_()  # isolate the bias: exactly the initial kernels
        burst = torch.rand(2, 3, 3, 16, 16)
        out = net(burst)
        assert torch.allclose(out.linear, burst[:, 1], atol=1e-6)
    with pytest.raises(ParamError, match="kpn_init"):
        GimbalNet(n=3, kpn_init="median")


def test_kpn_released_init_starts_near_zero() -> None:
    """``kpn_init: released`` keeps PyTorch's default init of the output layer (the authors' KPN): no delta bias,
    so an untrained merge is far from both the frames' mean and the reference, unlike the two identity inits."""
    torch.manual_seed(0)
    burst = torch.rand(2, 3, 1, 16, 16) + 0.5
    outs = {}
    for init in ("mean", "reference", "released"):
        torch.manual_seed(1)
        net = GimbalNet(3, channels=1, use_flow=False, kpn_base_channels=4, kpn_depth=1, kpn_init=init)
        outs[init] = net(burst).linear
    assert (outs["mean"] - burst.mean(1)).abs().mean() < 0.1 * burst.mean()
    assert (outs["released"] - burst.mean(1)).abs().mean() > 0.5 * burst.mean()
    with pytest.raises(ParamError, match="kpn_init"):
        parse_config({"model": {"kpn_init": "zero"}})


# ----------------------------------------------------------------------------- known answers through the real KPN
def _kpn_net(n: int, k: int = 3) -> GimbalNet:
    """A GimbalNet without flow whose KPN output layer ignores its input: the kernels are its bias (set by tests)."""
    torch.manual_seed(0)
    net = GimbalNet(n, channels=1, use_flow=False, kernel_size=k, kpn_base_channels=4, kpn_depth=1,
                    target="sensor")
    net.kpn.head.weight.data.zero_()
    net.kpn.head.bias.data.zero_()
    return net


def _set_kernel(net: GimbalNet, frame: int, tap: int, value: float) -> None:
    """Kernel entry ``tap`` (row-major in the k x k window) of ``frame`` at every pixel = ``value``."""
    kk = net.kpn.kernel_size**2
    net.kpn.head.bias.data[frame * kk + tap] = value


def _edge_shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = img[clip(y + dy), clip(x + dx)]`` (replicated border), by numpy indexing."""
    h, w = img.shape[-2:]
    rows = np.clip(np.arange(h) + dy, 0, h - 1)
    cols = np.clip(np.arange(w) + dx, 0, w - 1)
    return img[..., rows[:, None], cols[None, :]]


@pytest.mark.parametrize("frame", [0, 1, 2])
def test_kpn_delta_on_one_frame_returns_that_frame(frame: int) -> None:
    """Eq. (15) is the mean over the F frames of each frame filtered by its kernel: a centred delta of weight F on
    one frame and zero kernels on the others return exactly that frame, whichever frame it is."""
    n, k = 3, 3
    net = _kpn_net(n, k)
    _set_kernel(net, frame, k * k // 2, float(n))
    burst = torch.rand(2, n, 1, 12, 12)
    out = net(burst)
    torch.testing.assert_close(out.linear, burst[:, frame], atol=1e-6, rtol=0)
    # and the other frames do not matter at all
    other = burst.clone()
    other[:, [i for i in range(n) if i != frame]] = torch.rand(2, n - 1, 1, 12, 12)
    torch.testing.assert_close(net(other).linear, burst[:, frame], atol=1e-6, rtol=0)


def test_kpn_kernels_are_not_normalized() -> None:
    """The paper's KPN (after Mildenhall et al.) applies its kernels as predicted, with no softmax or division by
    their sum: a delta of weight 2F returns twice the frame, and kernels summing to zero return zero; a delta one
    tap off-centre returns the frame shifted by one pixel (replicated border), checked against numpy."""
    n, k = 3, 3
    burst = torch.rand(1, n, 1, 10, 12)
    net = _kpn_net(n, k)
    _set_kernel(net, 1, k * k // 2, 2.0 * n)
    torch.testing.assert_close(net(burst).linear, 2 * burst[:, 1], atol=1e-6, rtol=0)
    net = _kpn_net(n, k)
    _set_kernel(net, 0, k * k // 2, 1.0)
    _set_kernel(net, 0, 0, -1.0)  # sums to zero on a flat image
    flat = torch.full((1, n, 1, 10, 12), 0.7)
    torch.testing.assert_close(net(flat).linear, torch.zeros(1, 1, 10, 12), atol=1e-6, rtol=0)
    net = _kpn_net(n, k)
    _set_kernel(net, 2, k * k // 2 + 1, float(n))  # one tap right of centre: out[y, x] = in[y, x + 1]
    expected = _edge_shift(burst[:, 2].numpy(), 0, 1)
    np.testing.assert_allclose(net(burst).linear.detach().numpy(), expected, atol=1e-6, rtol=0)
    net = _kpn_net(n, k)
    _set_kernel(net, 2, k * k // 2 - k, float(n))  # one tap above centre: out[y, x] = in[y - 1, x]
    expected = _edge_shift(burst[:, 2].numpy(), -1, 0)
    np.testing.assert_allclose(net(burst).linear.detach().numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("dx", "dy"), [(2, -1), (-3, 0), (0, 2), (1, 1)])
def test_warp_integer_shift_matches_numpy_indexing(dx: int, dy: int) -> None:
    """A constant integer flow (dx, dy) samples frame(x + dx, y + dy), the border replicated: the whole warped image,
    border included, equals numpy's indexing of the same frame."""
    g = torch.Generator().manual_seed(dx * 10 + dy)
    frames = torch.rand(2, 2, 3, 9, 11, generator=g)
    flows = torch.zeros(2, 2, 2, 9, 11)
    flows[:, :, 0], flows[:, :, 1] = float(dx), float(dy)
    out = warp(frames, flows).numpy()
    np.testing.assert_allclose(out, _edge_shift(frames.numpy(), dy, dx), atol=1e-5, rtol=0)


def test_warp_half_pixel_is_the_mean_of_neighbours() -> None:
    """Bilinear: a flow of +0.5 px in x samples halfway between a pixel and its right neighbour."""
    frames = torch.rand(1, 1, 1, 6, 8)
    flows = torch.zeros(1, 1, 2, 6, 8)
    flows[:, :, 0] = 0.5
    out = warp(frames, flows)[0, 0, 0].numpy()
    img = frames[0, 0, 0].numpy()
    np.testing.assert_allclose(out[:, :-1], (img[:, :-1] + img[:, 1:]) / 2, atol=1e-5, rtol=0)


def test_network_output_depends_on_its_input() -> None:
    """A trained-looking (perturbed) network: another burst gives another image, each frame of the burst moves the
    output, and a change in one pixel moves the output near that pixel only (the KPN's kernels are local)."""
    torch.manual_seed(0)
    net = GimbalNet(3, channels=1, use_flow=True, **TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    burst = torch.rand(1, 3, 1, 16, 16)
    with torch.no_grad():
        base = net(burst).linear
        assert (net(torch.rand(1, 3, 1, 16, 16)).linear - base).abs().mean() > 1e-2
        for i in range(3):
            moved = burst.clone()
            moved[:, i] = moved[:, i].flip(-1)
            assert (net(moved).linear - base).abs().max() > 1e-3, f"frame {i} is ignored"
    x = burst.clone().requires_grad_(True)
    net.eval()
    net(x).linear[0, 0, 8, 8].backward()
    grad = x.grad[0].abs().sum(dim=(0, 1))  # (H, W) influence of each input pixel on output pixel (8, 8)
    assert grad[8, 8] > 0
    assert grad[0, :].sum() + grad[:, 15].sum() < grad[8, 8]  # far pixels matter less than the pixel itself


def test_gradcheck_apply_kernels_and_warp() -> None:
    """Analytic gradients of the merge (eq. 15) and of the warp equal finite differences, float64, tiny inputs
    (the flow away from integer positions, where bilinear sampling is not differentiable)."""
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 2, 1, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    kernels = torch.rand(1, 2, 1, 9, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(apply_kernels, (frames, kernels), eps=1e-6, atol=1e-6)
    flows = (0.3 + 0.4 * torch.rand(1, 2, 2, 4, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(warp, (frames, flows), eps=1e-6, atol=1e-6)


def test_flow_norm_makes_the_flow_independent_of_the_light() -> None:
    """With ``flow_norm`` the flow network sees the burst divided by twice its reference frame's mean, so a burst ten
    times darker (the scale of this project's bursts against [0, 1] textures) gets the same flows; the KPN still sees
    the frames as they are. Without it the flow network sees a different input and its flows change."""
    torch.manual_seed(0)
    burst = torch.rand(2, 3, 1, 16, 16) * 0.8 + 0.1
    for norm in (True, False):
        net = GimbalNet(3, channels=1, kpn_base_channels=4, kpn_depth=1, flow_levels=2, flow_channels=(4, 4),
                        flow_norm=norm)
        with torch.no_grad():
            for p in net.parameters():  # away from the identity init, so the flows depend on the input
                p.add_(0.2 * torch.randn(p.shape))
            bright, dark = net(burst), net(0.1 * burst)
            kpn_in = []
            handle = net.kpn.register_forward_pre_hook(lambda _m, args: kpn_in.append(args[0]))
            net(0.1 * burst)
            handle.remove()
        assert bright.flows.abs().max() > 0.05
        if norm:
            torch.testing.assert_close(dark.flows, bright.flows, atol=1e-5, rtol=1e-5)
            # the scale is the reference frame's: twice its mean, per burst
            torch.testing.assert_close(net.input_scale(burst).view(-1), 2 * burst[:, 1].mean(dim=(1, 2, 3)))
            torch.testing.assert_close(kpn_in[0][:, :3], 0.1 * burst)  # the KPN reads the burst unscaled
        else:
            assert (dark.flows - bright.flows).abs().max() > 1e-3


def test_kpn_norm_centres_the_kpn_input_and_keeps_the_merge_linear() -> None:
    """With ``kpn_norm`` the KPN sees its frames divided by twice the reference frame's mean, minus 0.5 (so the
    reference frame it sees has mean 0, whatever the light): a burst ten times darker gets the same kernels, and as
    eq. (15) filters the frames as they are, the merge is exactly a tenth. Without it the kernels change."""
    torch.manual_seed(0)
    burst = torch.rand(2, 3, 1, 16, 16) * 0.8 + 0.1
    for norm in (True, False):
        net = GimbalNet(3, channels=1, kpn_base_channels=4, kpn_depth=1, use_flow=False, flow_norm=False,
                        kpn_norm=norm)
        with torch.no_grad():
            for p in net.parameters():  # away from the identity init, so the kernels depend on the input
                p.add_(0.2 * torch.randn(p.shape))
            seen: list[torch.Tensor] = []
            kernels: list[torch.Tensor] = []

            def record(_m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
                seen.append(args[0])
                kernels.append(out)

            handle = net.kpn.register_forward_hook(record)
            bright, dark = net(burst), net(0.1 * burst)
            handle.remove()
        if norm:
            expected = burst / (2 * burst[:, 1].mean(dim=(1, 2, 3))).view(-1, 1, 1, 1, 1) - 0.5
            torch.testing.assert_close(seen[0], expected)
            assert seen[0][:, 1].mean(dim=(1, 2, 3)).abs().max() < 1e-6
            torch.testing.assert_close(kernels[1], kernels[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(dark.linear, 0.1 * bright.linear, atol=1e-6, rtol=1e-5)
        else:
            torch.testing.assert_close(seen[0], burst)
            assert (kernels[1] - kernels[0]).abs().max() > 1e-3


def test_a_model_file_from_before_kpn_norm_loads_as_it_was_trained() -> None:
    """A model file's stored params without ``model.kpn_norm`` were written before it existed: its KPN saw the
    frames as they are, so the loaded system must not centre them (the current default does)."""
    from gimbal.model_params import system_groups

    assert parse_config({}).model.kpn_norm is True
    assert system_groups({"model": {"flow_norm": True}}, "gimbal").model.kpn_norm is False
    assert system_groups({}, "gimbal").model.kpn_norm is False
    assert system_groups({"model": {"kpn_norm": True}}, "gimbal").model.kpn_norm is True


def test_he_trunk_init_keeps_the_signal_through_the_kpn() -> None:
    """He et al. (2015): with weights of variance 2 / fan_in and zero biases, a ReLU layer keeps the mean square of
    its pre-activations (Var[y_l] = Var[y_{l-1}]), so the burst's variation reaches the KPN's output layer. PyTorch's
    default (variance 1 / (3 fan_in), the released code) shrinks the input-driven part by a factor of about 6 per
    layer while its biases add constants: after the U-Net's fifteen trunk convolutions the kernels hardly depend on
    the input. The input-driven part of each of the first block's pre-activations is measured with hooks as its mean
    square difference between a burst and a black one (0.1 contrast, as the exposure-normalized bursts here)."""
    ratios: dict[str, list[float]] = {}
    change: dict[str, float] = {}
    for init in ("he", "pytorch"):
        torch.manual_seed(0)
        kpn = KPN(3, kernel_size=5, base_channels=8, depth=2, init_reference=1, trunk_init=init)
        convs = [m for m in kpn.modules() if isinstance(m, nn.Conv2d) and m is not kpn.head]
        assert len(convs) == 15
        if init == "he":
            assert all(float(c.bias.detach().abs().max()) == 0.0 for c in convs)
        outs: list[torch.Tensor] = []
        hooks = [c.register_forward_hook(lambda _m, _a, out: outs.append(out.clone())) for c in convs[:3]]  # before the in-place ReLU
        gen = torch.Generator().manual_seed(1)
        a, b = (0.1 * torch.randn(8, 3, 1, 32, 32, generator=gen) for _ in range(2))
        with torch.no_grad():
            ka = kpn(a)
            kpn(torch.zeros_like(a))
            for h in hooks:
                h.remove()
            kb = kpn(b)
        signal = [float((outs[i] - outs[i + 3]).pow(2).mean()) for i in range(3)]
        # the first layer's over twice the input's mean square (no ReLU before it), then each over the one before
        ratios[init] = [signal[0] / float(a.pow(2).mean()) / 2] + [signal[i + 1] / signal[i] for i in range(2)]
        change[init] = float((ka - kb).norm() / ka.norm())
    # He: every ratio near 1 (a ReLU halves the mean square, the factor 2 restores it); PyTorch's default: near 1/6
    assert all(0.5 < r < 2.0 for r in ratios["he"]), ratios
    assert all(r < 0.35 for r in ratios["pytorch"]), ratios
    # so the kernels an untrained KPN predicts depend on the burst, 30 times more than under the default
    assert change["he"] > 30 * change["pytorch"], change
