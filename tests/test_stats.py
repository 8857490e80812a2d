"""Tests of gimbal.evaluation.stats: bootstrap intervals over test clips, checked as statistics (coverage, pairing,
agreement with independent computations), plus determinism, the degenerate case and every error."""

from __future__ import annotations

import inspect
import itertools
import math

import numpy as np
import pytest

from gimbal.errors import ParamError
from gimbal.evaluation.stats import Interval, bootstrap_mean, paired_difference


def test_coverage_of_true_mean_at_n12() -> None:
    """Monte Carlo coverage: 400 samples of n = 12 from N(30, 2^2); the 95% interval should cover 30.

    The percentile bootstrap of the mean under-covers at small n: its spread is the divide-by-n standard
    error and its quantiles are normal, not Student-t, so for normal data the expected coverage is about
    P(|t_11| < 1.96 * sqrt(11/12)) = 0.913, not 0.95. With 400 trials the Monte Carlo standard error of the
    observed coverage is about 0.014, so the band [0.86, 0.96] is about +-3.5 standard errors around 0.913:
    it allows the honest under-coverage (seen: 0.89-0.93 over 15 other seeds) and fails for an interval
    ~30% too narrow (coverage ~0.80) or off-centre. A 90% interval (expected ~0.86) is borderline here;
    the normal-theory test below catches a wrong level for sure.
    """
    rng = np.random.default_rng(12345)
    true_mean, trials, n = 30.0, 400, 12
    covered = 0
    for t in range(trials):
        x = rng.normal(true_mean, 2.0, size=n)
        iv = bootstrap_mean(x, resamples=2000, seed=t)
        covered += iv.lo <= true_mean <= iv.hi
    coverage = covered / trials
    assert 0.86 <= coverage <= 0.96, coverage


def test_paired_interval_removes_shared_clip_effect() -> None:
    """Method A is exactly 1 dB better than B on every clip up to small noise, but clips differ by ~5 dB.

    The paired interval must exclude 0 and be far narrower than the difference of the two separate
    intervals, which straddles 0. (Whether it covers the true margin 1 is a coverage question for one
    draw, tested in aggregate above; here it does not quite: [0.88, 0.99].)
    """
    rng = np.random.default_rng(7)
    n = 20
    s = rng.normal(30.0, 5.0, size=n)  # clip difficulty, shared by both methods
    a = s + 1.0 + rng.normal(0.0, 0.1, size=n)
    b = s + rng.normal(0.0, 0.1, size=n)

    paired = paired_difference(a, b)
    assert paired.n == n
    assert paired.lo > 0.0
    assert abs(paired.mean - 1.0) < 0.15  # noise s.e. of the mean difference is ~0.03
    assert paired.mean == pytest.approx(a.mean() - b.mean(), abs=1e-12)

    ia, ib = bootstrap_mean(a), bootstrap_mean(b)
    unpaired_lo, unpaired_hi = ia.lo - ib.hi, ia.hi - ib.lo
    assert unpaired_lo < 0.0 < unpaired_hi
    # expected widths: paired ~ 2*1.96*0.14/sqrt(20) = 0.12, unpaired ~ 4*1.96*5/sqrt(20) = 8.8
    assert (paired.hi - paired.lo) < (unpaired_hi - unpaired_lo) / 20


def test_paired_difference_is_antisymmetric() -> None:
    """Swapping the two methods negates the margin and mirrors its interval (same seed, same resamples)."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.8, 0.05, size=15), rng.normal(0.78, 0.05, size=15)
    ab, ba = paired_difference(a, b, seed=5), paired_difference(b, a, seed=5)
    assert ba.mean == pytest.approx(-ab.mean, abs=1e-12)
    assert ba.lo == pytest.approx(-ab.hi, abs=1e-12)
    assert ba.hi == pytest.approx(-ab.lo, abs=1e-12)


def test_agrees_with_normal_theory_at_large_n() -> None:
    """At n = 400 the bootstrap distribution of the mean is close to normal: the 95% interval should be
    mean +- 1.96 s / sqrt(n) up to Monte Carlo error (~0.03 standard errors with 10000 resamples)."""
    rng = np.random.default_rng(11)
    x = rng.normal(25.0, 3.0, size=400)
    se = x.std(ddof=1) / math.sqrt(x.size)
    iv = bootstrap_mean(x)
    assert iv.mean == pytest.approx(x.mean(), abs=1e-12)
    assert iv.lo == pytest.approx(x.mean() - 1.96 * se, abs=0.12 * se)
    assert iv.hi == pytest.approx(x.mean() + 1.96 * se, abs=0.12 * se)
    # and at level 0.8 the z-quantile is 1.2816
    iv80 = bootstrap_mean(x, level=0.8)
    assert iv80.lo == pytest.approx(x.mean() - 1.2816 * se, abs=0.12 * se)
    assert iv80.hi == pytest.approx(x.mean() + 1.2816 * se, abs=0.12 * se)


def test_matches_exact_bootstrap_distribution_at_n4() -> None:
    """At n = 4 the bootstrap distribution of the mean can be enumerated exactly (4^4 = 256 equally likely
    resamples). The percentile interval is its 2.5% and 97.5% quantiles; here both fall well inside one
    atom of the discrete distribution (CDF margin ~0.005, ~5 Monte Carlo s.d. at 20000 resamples), so the
    Monte Carlo interval must equal them exactly. This catches resampling the wrong number of clips."""
    x = [0.0, 1.0, 3.0, 10.0]
    means = np.array([np.mean(r) for r in itertools.product(x, repeat=len(x))])
    atoms = np.unique(means)
    cdf = np.array([(means <= v).mean() for v in atoms])
    exact = []
    for p in (0.025, 0.975):
        k = int(np.searchsorted(cdf, p))  # the smallest atom whose CDF reaches p
        assert cdf[k] - p > 0.004 and p - (cdf[k - 1] if k else 0.0) > 0.004  # the test is well posed
        exact.append(float(atoms[k]))
    assert exact == [0.5, 7.75]
    for seed in (0, 1, 2):
        iv = bootstrap_mean(x, resamples=20000, seed=seed)
        assert (iv.lo, iv.hi) == pytest.approx(exact, abs=1e-12)
        assert iv.mean == 3.5


def test_agrees_with_scipy_bootstrap() -> None:
    """Against scipy.stats.bootstrap (percentile method), with independent random draws (a different seed),
    on skewed data at n = 25, for one sample and for paired samples; the tolerance is several Monte Carlo
    standard deviations of the quantiles (20000 resamples each: ~0.05 s.e. seen) but far below the interval's width."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(21)
    # scipy >= 1.15 takes rng=, older versions random_state=
    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    x = rng.gamma(2.0, 1.5, size=25)  # skewed: the percentile interval is asymmetric about the mean
    ref = stats.bootstrap((x,), np.mean, method="percentile", confidence_level=0.95, n_resamples=20000,
                          **{key: np.random.default_rng(999)}).confidence_interval
    iv = bootstrap_mean(x, resamples=20000, seed=1)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert iv.lo == pytest.approx(ref.low, abs=0.12 * se)
    assert iv.hi == pytest.approx(ref.high, abs=0.12 * se)

    y = x + rng.normal(0.3, 0.5, size=x.size)
    ref_p = stats.bootstrap((y, x), lambda u, v, axis: np.mean(u - v, axis=axis), paired=True,
                            vectorized=True, method="percentile", n_resamples=20000,
                            **{key: np.random.default_rng(999)}).confidence_interval
    ip = paired_difference(y, x, resamples=20000, seed=1)
    se_d = (y - x).std(ddof=1) / math.sqrt(x.size)
    assert ip.lo == pytest.approx(ref_p.low, abs=0.12 * se_d)
    assert ip.hi == pytest.approx(ref_p.high, abs=0.12 * se_d)


def test_deterministic_and_seed_dependent() -> None:
    x = [31.2, 29.8, 33.1, 30.4, 28.9, 32.0, 30.7]
    assert bootstrap_mean(x, seed=4) == bootstrap_mean(list(x), seed=4)
    assert paired_difference(x, x[::-1], seed=4) == paired_difference(x, x[::-1], seed=4)
    assert bootstrap_mean(x, seed=4) != bootstrap_mean(x, seed=5)  # the seed is actually used
    assert bootstrap_mean(x, seed=4).mean == bootstrap_mean(x, seed=5).mean


def test_degenerate_interval_for_equal_values() -> None:
    for v in (0.1, 27.3, 0.0):  # 0.1 * 7 / 7 != 0.1 in floating point: the interval must still be exact
        iv = bootstrap_mean([v] * 7)
        assert (iv.mean, iv.lo, iv.hi, iv.n) == (v, v, v, 7)
    d = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert (d.mean, d.lo, d.hi) == (0.5, 0.5, 0.5)


def test_as_dict_rounds_and_keeps_n() -> None:
    iv = Interval(mean=30.123456, lo=29.98766, hi=30.25, n=12)
    d = iv.as_dict()
    assert d == {"mean": 30.1235, "lo": 29.9877, "hi": 30.25, "n": 12}
    assert isinstance(d["n"], int) and all(isinstance(d[k], float) for k in ("mean", "lo", "hi"))
    assert iv.as_dict(digits=1) == {"mean": 30.1, "lo": 30.0, "hi": 30.2, "n": 12}
    with pytest.raises(AttributeError):  # frozen
        iv.mean = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bootstrap_mean([]), "at least 2"),
        (lambda: bootstrap_mean([1.0]), "at least 2"),
        (lambda: paired_difference([1.0], [2.0]), "at least 2"),
        (lambda: paired_difference([1.0, 2.0, 3.0], [1.0, 2.0]), "same clips"),
        (lambda: bootstrap_mean([1.0, float("nan"), 2.0]), "non-finite"),
        (lambda: bootstrap_mean([1.0, float("inf")]), "non-finite"),
        (lambda: paired_difference([1.0, 2.0], [1.0, float("-inf")]), "non-finite"),
        (lambda: paired_difference([1e308, 2.0], [-1e308, 1.0]), "non-finite"),
        (lambda: bootstrap_mean([1.0, 2.0], level=0.0), "level"),
        (lambda: bootstrap_mean([1.0, 2.0], level=1.0), "level"),
        (lambda: bootstrap_mean([1.0, 2.0], level=95), "level"),
        (lambda: bootstrap_mean([1.0, 2.0], level=float("nan")), "level"),
        (lambda: paired_difference([1.0, 2.0], [1.0, 2.5], level=-0.5), "level"),
        (lambda: bootstrap_mean([1.0, 2.0], resamples=99), "resamples"),
        (lambda: bootstrap_mean([1.0, 2.0], resamples=0), "resamples"),
        (lambda: paired_difference([1.0, 2.0], [1.0, 2.5], resamples=10), "resamples"),
        (lambda: bootstrap_mean([[1.0, 2.0], [3.0, 4.0]]), "flat"),
        (lambda: bootstrap_mean(["a", "b"]), "numbers"),
    ],
)
def test_errors(call, match: str) -> None:
    with pytest.raises(ParamError, match=match):
        call()


def test_boundary_params_are_accepted() -> None:
    iv = bootstrap_mean([1.0, 2.0], resamples=100, level=0.5)
    assert 1.0 <= iv.lo <= iv.hi <= 2.0 and iv.n == 2


# --- the cluster (source video) bootstrap -------------------------------------------------------------------------


def test_one_clip_per_cluster_is_the_clip_bootstrap() -> None:
    """Every clip its own video: resampling videos is resampling clips, draw for draw (same seed)."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(27.0, 2.0, size=11), rng.normal(26.0, 2.0, size=11)
    videos = [f"video_{i}" for i in range(11)]
    for seed in (0, 7):
        clip, video = bootstrap_mean(a, seed=seed), bootstrap_mean(a, seed=seed, clusters=videos)
        assert (video.mean, video.lo, video.hi) == pytest.approx((clip.mean, clip.lo, clip.hi), abs=1e-12)
        assert (clip.clusters, video.clusters, video.n) == (None, 11, 11)
        clip, video = paired_difference(a, b, seed=seed), paired_difference(a, b, seed=seed, clusters=videos)
        assert (video.mean, video.lo, video.hi) == pytest.approx((clip.mean, clip.lo, clip.hi), abs=1e-12)


def test_identical_clips_within_a_video_give_the_video_level_interval() -> None:
    """Three identical clips per video carry no more information than the video: the interval must be the
    bootstrap of the 6 video values themselves (same seed, so exactly), and the clip bootstrap, which counts
    18 clips, is about sqrt(3) times too narrow."""
    v = np.array([24.0, 27.5, 25.1, 30.2, 22.8, 26.4])
    x = np.repeat(v, 3)
    videos = np.repeat([f"flight_{i}" for i in range(6)], 3).tolist()
    by_video = bootstrap_mean(v, seed=3)
    clustered = bootstrap_mean(x, seed=3, clusters=videos)
    assert (clustered.mean, clustered.lo, clustered.hi) == pytest.approx((by_video.mean, by_video.lo, by_video.hi),
                                                                         abs=1e-12)
    assert (clustered.n, clustered.clusters) == (18, 6)
    naive = bootstrap_mean(x, seed=3)
    ratio = (clustered.hi - clustered.lo) / (naive.hi - naive.lo)
    assert 1.4 < ratio < 2.1, ratio  # sqrt(3) = 1.73 up to Monte Carlo error
    # the labels' names and the clips' order within the clusters do not matter
    renamed = bootstrap_mean(x, seed=3, clusters=[s.upper() for s in videos])
    assert renamed == clustered


def test_cluster_bootstrap_matches_exact_enumeration_with_unequal_videos() -> None:
    """4 videos of 1, 2, 3 and 1 clips: the 4^4 = 256 equally likely resamples of videos can be enumerated, each
    scored by the mean over all the clips it holds (not the mean of the video means). The percentile ends fall
    well inside one atom each (CDF margin >= 0.0055, ~5 Monte Carlo s.d. at 20000 resamples), so the Monte Carlo
    interval must equal them exactly. This catches resampling clips, or weighting videos equally."""
    groups = [[0.0], [1.0, 2.0], [4.0, 6.0, 11.0], [3.0]]
    x = [v for g in groups for v in g]
    videos = [i for i, g in enumerate(groups) for _ in g]
    sums, sizes = np.array([sum(g) for g in groups]), np.array([len(g) for g in groups], dtype=float)
    means = np.array([sums[list(r)].sum() / sizes[list(r)].sum() for r in itertools.product(range(4), repeat=4)])
    atoms = np.unique(means.round(12))
    cdf = np.array([(means <= a + 1e-12).mean() for a in atoms])
    exact = []
    for p in (0.025, 0.975):
        k = int(np.searchsorted(cdf, p))
        assert cdf[k] - p > 0.005 and p - (cdf[k - 1] if k else 0.0) > 0.005  # the test is well posed
        exact.append(float(atoms[k]))
    assert exact == pytest.approx([0.75, 6.3])
    for seed in (0, 1):
        iv = bootstrap_mean(x, resamples=20000, seed=seed, clusters=videos)
        assert (iv.lo, iv.hi) == pytest.approx(exact, abs=1e-9)
        assert iv.mean == pytest.approx(np.mean(x), abs=1e-12) and (iv.n, iv.clusters) == (7, 4)


def test_coverage_on_clustered_data_is_wider_and_closer_to_nominal() -> None:
    """Monte Carlo on synthetic clustered data: 8 videos of 3 clips, video effects N(0, 2^2) shared by their clips,
    clip noise N(0, 0.5^2); the true mean is 0. The clip bootstrap treats the 24 clips as independent: its spread
    is about sqrt(4.25 / 24) = 0.42 against the true 0.71, so it covers about P(|Z| < 1.15) = 0.75. The video
    bootstrap should cover about as a bootstrap of 8 values does (~0.89; t_7 and divide-by-n). 300 trials
    (Monte Carlo s.e. ~0.02): the bands allow that and fail an interval that ignores the clusters."""
    rng = np.random.default_rng(2024)
    videos = np.repeat(np.arange(8), 3).tolist()
    trials, covered_video, covered_clip, width_ratio = 300, 0, 0, []
    for t in range(trials):
        x = np.repeat(rng.normal(0.0, 2.0, size=8), 3) + rng.normal(0.0, 0.5, size=24)
        video = bootstrap_mean(x, resamples=1000, seed=t, clusters=videos)
        clip = bootstrap_mean(x, resamples=1000, seed=t)
        covered_video += video.lo <= 0.0 <= video.hi
        covered_clip += clip.lo <= 0.0 <= clip.hi
        width_ratio.append((video.hi - video.lo) / (clip.hi - clip.lo))
    video_cov, clip_cov = covered_video / trials, covered_clip / trials
    assert 0.82 <= video_cov <= 0.96, video_cov
    assert clip_cov <= 0.84, clip_cov
    assert video_cov - clip_cov >= 0.08, (video_cov, clip_cov)
    assert 1.4 < float(np.median(width_ratio)) < 2.0  # ~0.71 / 0.42 = 1.7


def test_cluster_bootstrap_is_deterministic_and_paired() -> None:
    a = [31.2, 29.8, 33.1, 30.4, 28.9, 32.0, 30.7, 29.1]
    b = [30.0, 29.9, 31.0, 30.1, 28.0, 31.5, 30.2, 28.4]
    videos = ["bikes", "bikes", "bikes", "astronaut", "astronaut", "cell", "coffee", "grass"]
    assert paired_difference(a, b, seed=4, clusters=videos) == paired_difference(a, b, seed=4, clusters=videos)
    many = np.random.default_rng(0).normal(size=30)  # 15 videos of 2 clips: an almost continuous resample law
    pairs = np.repeat(np.arange(15), 2).tolist()
    assert bootstrap_mean(many, seed=4, clusters=pairs) != bootstrap_mean(many, seed=5, clusters=pairs)
    ab, ba = paired_difference(a, b, seed=5, clusters=videos), paired_difference(b, a, seed=5, clusters=videos)
    assert (ba.mean, ba.lo, ba.hi) == pytest.approx((-ab.mean, -ab.hi, -ab.lo), abs=1e-12)
    # resampling videos of paired differences = bootstrapping the differences by video
    d = paired_difference(a, b, seed=5, clusters=videos)
    assert d == bootstrap_mean(np.subtract(a, b), seed=5, clusters=videos)


def test_cluster_as_dict_and_errors() -> None:
    iv = bootstrap_mean([1.0, 2.0, 3.0, 4.0], clusters=["a", "a", "b", "b"], resamples=100)
    assert iv.as_dict()["clusters"] == 2 and "clusters" not in bootstrap_mean([1.0, 2.0]).as_dict()
    for clusters, match in ((["a", "b"], "one label per clip"), (["a", "a", "a"], "at least 2 clusters"),
                            ("abc", "sequence of labels"), ([["a"], ["b"], ["c"]], "hashable")):
        with pytest.raises(ParamError, match=match):
            bootstrap_mean([1.0, 2.0, 3.0], clusters=clusters)
    with pytest.raises(ParamError, match="paired_difference: need at least 2 clusters"):
        paired_difference([1.0, 2.0], [0.0, 1.0], clusters=["v", "v"])
