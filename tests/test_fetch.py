"""Fetch stage: yt-dlp download of http(s) URLs, file URLs and local paths into data/raw."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import yaml

from gimbal.data import fetch
from gimbal.data.video import read_frames, write_video
from gimbal.errors import FetchError, ParamError

REPO = Path(__file__).resolve().parents[1]
FRAMES, W, H, FPS = 12, 64, 48, 24


@pytest.fixture(scope="module")
def src_dir(tmp_path_factory) -> Path:
    """A tiny real video, a text file posing as .mp4, and a truncated mp4."""
    d = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(FRAMES, H, W, 3), dtype=np.uint8)
    frames[:] = np.clip(frames.astype(int) // 4 + np.arange(FRAMES)[:, None, None, None] * 10, 0, 255)
    write_video(d / "tiny.mp4", frames, FPS, codec="libx264", crf=12)
    (d / "notvideo.mp4").write_text("this is a text file, not a video\n" * 20)
    data = (d / "tiny.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    faststart = d / "faststart.mp4"  # index first, then half of the frames' data
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(d / "tiny.mp4"), "-c", "copy",
                    "-movflags", "+faststart", str(faststart)], check=True)
    data = faststart.read_bytes()
    (d / "truncated_faststart.mp4").write_bytes(data[: len(data) * 2 // 3])
    return d


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server(src_dir):
    """Loopback HTTP server on an ephemeral port serving ``src_dir``; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(src_dir)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(raw: Path) -> list[str]:
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


def test_fetch_http_file_url_and_local_path(server, src_dir, tmp_path, capfd):
    raw = tmp_path / "raw"
    sources = [f"{server}/tiny.mp4", (src_dir / "tiny.mp4").as_uri(), str(src_dir / "tiny.mp4")]
    manifest = fetch.fetch_sources(sources, raw, max_height=720, progress=False)
    assert capfd.readouterr().out == ""  # yt-dlp stays quiet
    assert manifest["failed"] == []
    videos = manifest["videos"]
    assert [v["url"] for v in videos] == sources
    assert len({v["id"] for v in videos}) == 3  # same file name, different sources -> different ids
    assert json.loads((raw / "manifest.json").read_text()) == manifest
    original = read_frames(src_dir / "tiny.mp4")
    for v in videos:
        assert set(v) == {"id", "url", "file", "sha256", "fps", "width", "height", "frames"}
        assert v["file"] == f"{v['id']}.mp4" and v["id"].startswith("tiny-")
        assert (v["frames"], v["width"], v["height"]) == (FRAMES, W, H)
        assert v["fps"] == pytest.approx(FPS)
        assert v["sha256"] == _sha(raw / v["file"])
        assert np.array_equal(read_frames(raw / v["file"]), original)
    assert _leftovers(raw) == sorted([*(v["file"] for v in videos), "manifest.json"])


def test_refetch_is_skipped_and_changed_files_are_fetched_again(server, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    sources = [f"{server}/tiny.mp4"]
    first = fetch.fetch_sources(sources, raw, progress=False)
    path = raw / first["videos"][0]["file"]
    mtime = path.stat().st_mtime_ns

    calls = []
    real_download = fetch.download

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real_download(*args, **kwargs)

    monkeypatch.setattr(fetch, "download", spy)
    assert fetch.fetch_sources(sources, raw, progress=False) == first
    assert calls == [] and path.stat().st_mtime_ns == mtime

    path.write_bytes(path.read_bytes()[:-10])  # damaged on disk -> sha256 mismatch -> fetched again
    assert fetch.fetch_sources(sources, raw, progress=False) == first
    assert calls == sources


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tiny.mp4"


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        ("404", "HTTP Error 404"),
        ("notvideo", "not a complete video"),
        ("truncated", "not a complete video"),
        ("truncated_faststart", "not a complete video"),
        ("unreachable", "download failed"),
        ("missing_path", "file not found"),
    ],
)
def test_failing_source_raises_clear_error_and_leaves_nothing(server, tmp_path, kind, hint):
    source = {
        "404": f"{server}/nothere.mp4",
        "notvideo": f"{server}/notvideo.mp4",
        "truncated": f"{server}/truncated.mp4",
        "truncated_faststart": f"{server}/truncated_faststart.mp4",
        "unreachable": _closed_port_url(),
        "missing_path": str(tmp_path / "nope.mp4"),
    }[kind]
    raw = tmp_path / "raw"
    with pytest.raises(FetchError) as err:
        fetch.fetch_sources([source], raw, progress=False)
    msg = str(err.value)
    assert f"'{source}'" in msg and hint in msg and "data.sources" in msg
    assert "\n" not in msg
    assert _leftovers(raw) == []  # no partial mp4, no .part/.ytdl, no temp folder, no manifest


def test_skip_failed_records_failures(server, tmp_path):
    raw = tmp_path / "raw"
    bad = f"{server}/notvideo.mp4"
    manifest = fetch.fetch_sources([f"{server}/nothere.mp4", f"{server}/tiny.mp4", bad], raw, skip_failed=True,
                                   progress=False)
    assert [v["url"] for v in manifest["videos"]] == [f"{server}/tiny.mp4"]
    assert [f["url"] for f in manifest["failed"]] == [f"{server}/nothere.mp4", bad]
    assert all(f"'{f['url']}'" in f["error"] for f in manifest["failed"])
    assert _leftovers(raw) == sorted([manifest["videos"][0]["file"], "manifest.json"])


def test_sources_removed_from_the_list_are_deleted(server, src_dir, tmp_path):
    raw = tmp_path / "raw"
    both = fetch.fetch_sources([f"{server}/tiny.mp4", str(src_dir / "tiny.mp4")], raw, progress=False)
    one = fetch.fetch_sources([str(src_dir / "tiny.mp4")], raw, progress=False)
    assert one["videos"] == both["videos"][1:]
    assert _leftovers(raw) == sorted([one["videos"][0]["file"], "manifest.json"])


def test_read_sources_from_text_file(tmp_path):
    txt = tmp_path / "list.txt"
    txt.write_text("# header\n\nhttps://a.example/v.mp4  # inline comment\n  data/x.mp4\nhttps://a.example/v.mp4\n")
    assert fetch.read_sources(str(txt)) == ["https://a.example/v.mp4", "data/x.mp4"]
    txt.write_text("# only comments\n")
    with pytest.raises(ParamError, match="no sources"):
        fetch.read_sources(str(txt))
    with pytest.raises(ParamError, match="not found"):
        fetch.read_sources(str(tmp_path / "missing.txt"))


def test_repository_youtube_list_is_well_formed():
    urls = fetch.read_sources(str(REPO / "data/sources/youtube_drone.txt"))
    assert urls, "the paper-scale list must not be empty"
    for url in urls:
        assert url.startswith("https://www.youtube.com/watch?v=") and len(url.split("v=")[1]) == 11


def test_source_ids_are_stable_and_filesystem_safe():
    yt = {"extractor_key": "Youtube", "id": "-l8UyG-3VVc"}
    assert fetch.source_id("https://www.youtube.com/watch?v=-l8UyG-3VVc", yt) == "-l8UyG-3VVc"
    a = fetch.source_id("http://h/x/My%20Video (1).mp4", {"extractor_key": "Generic", "id": "x"})
    assert a == fetch.source_id("http://h/x/My%20Video (1).mp4") and a.startswith("My_Video_1-")
    assert fetch.source_id("../.hidden.mp4").startswith("_hidden-")
    assert fetch.source_id("http://h/a.mp4") != fetch.source_id("http://g/a.mp4")
    assert fetch.format_selector(720).startswith("bv*[height<=720][ext=mp4]+ba[ext=m4a]/b[height<=720]")


@pytest.mark.slow
def test_stage_cli_fails_with_one_line_error(src_dir, tmp_path):
    params = {"data": {"sources": [str(src_dir / "tiny.mp4")], "raw_dir": "raw", "max_height": 720}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, str(REPO / "stages/fetch.py"), "--params", "ok.yaml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "raw/manifest.json").read_text())["videos"][0]["frames"] == FRAMES

    params["data"]["sources"] = ["missing/video.mp4"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, str(REPO / "stages/fetch.py"), "--params", "bad.yaml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and run.stderr.strip().splitlines()[-1] == errors[0]
    assert "'missing/video.mp4'" in errors[0] and "file not found" in errors[0]


@pytest.mark.parametrize("ext", ["mkv", "webm"])
def test_truncated_source_that_yt_dlp_remuxes_is_rejected(tmp_path, ext):
    """Issue 11: half of a Matroska/WebM file, remuxed by yt-dlp into a valid but shorter mp4, is not accepted."""
    frames = np.random.default_rng(1).integers(0, 256, size=(48, H, W, 3), dtype=np.uint8)
    write_video(tmp_path / "src.mp4", frames, FPS, codec="libx264", crf=12)
    codec = ["-c", "copy"] if ext == "mkv" else ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0"]
    full = tmp_path / f"full.{ext}"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(tmp_path / "src.mp4"), *codec,
                    str(full)], check=True)
    half = tmp_path / f"half.{ext}"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # the header (durations) stays whole
    raw = tmp_path / "raw"
    manifest = fetch.fetch_sources([str(full)], raw, progress=False)  # the whole file is remuxed and accepted
    assert manifest["videos"][0]["frames"] == 48
    with pytest.raises(FetchError, match=rf"'{half}': downloaded file is not a complete video \(truncated: "
                                         rf"\d+ of 48 frames decode, by the header of the downloaded \.{ext}: "):
        fetch.fetch_sources([str(half)], raw, progress=False)
    assert _leftovers(raw) == sorted([manifest["videos"][0]["file"], "manifest.json"])


def test_skip_failed_sources_are_retried_on_the_next_run(tmp_path):
    """With skip_failed a failing source is listed under "failed" and fetched again by the next run."""
    src, ok = tmp_path / "later.mp4", tmp_path / "ok.mp4"
    write_video(ok, np.zeros((4, H, W, 3), np.uint8), FPS, codec="libx264")
    raw = tmp_path / "raw"
    first = fetch.fetch_sources([str(src), str(ok)], raw, skip_failed=True, progress=False)
    assert [f["url"] for f in first["failed"]] == [str(src)]
    write_video(src, np.full((5, H, W, 3), 80, np.uint8), FPS, codec="libx264")  # the source is back
    second = fetch.fetch_sources([str(src), str(ok)], raw, skip_failed=True, progress=False)
    assert second["failed"] == [] and [v["frames"] for v in second["videos"]] == [5, 4]


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def _matroska(path: Path, frames: int, fps: float, audio_s: float | None = None) -> Path:
    """``frames`` of noise (every frame about the same size) as H.264 in Matroska/WebM (VP9); with ``audio_s``,
    an AAC tone of that many seconds too."""
    arr = np.random.default_rng(frames).integers(0, 256, size=(frames, 24, 32, 3), dtype=np.uint8)
    write_video(path.with_suffix(".src.mp4"), arr, fps, codec="libx264", crf=20)
    video = ["-c:v", "copy"] if path.suffix == ".mkv" else ["-c:v", "libvpx-vp9", "-deadline", "realtime",
                                                             "-cpu-used", "8", "-b:v", "200k"]
    audio = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_s}"] if audio_s else []
    _ffmpeg("-i", str(path.with_suffix(".src.mp4")), *audio, *video, *(["-c:a", "aac"] if audio_s else []), str(path))
    return path


@pytest.mark.parametrize(("ext", "frames", "fps", "keep"), [
    ("mkv", 120, 30, 0.88),  # ~104 of 120 frames: 0.53 s short, under the old 0.5 s + 2 frames slack
    ("mkv", 241, 240, 0.54),  # ~46 % of the frames lost: 0.46 s at 240 fps
    ("webm", 241, 240, 0.6),  # ~129 of 241 (VP9: the key frame holds more of the bytes)
])
def test_truncation_is_counted_in_frames_not_seconds(tmp_path, ext, frames, fps, keep):
    """Issue 19: a cut Matroska/WebM file whose lost time stayed under a slack in seconds (short or high-rate
    videos) is rejected by frame count: decoded frames against the header's duration x frame rate."""
    full = _matroska(tmp_path / f"full.{ext}", frames, fps)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * keep)])
    raw = tmp_path / "raw"
    assert fetch.fetch_sources([str(full)], raw, progress=False)["videos"][0]["frames"] == frames
    with pytest.raises(FetchError) as err:
        fetch.fetch_sources([str(cut)], raw, progress=False)
    msg = str(err.value)
    assert f"'{cut}': downloaded file is not a complete video (truncated: " in msg, msg
    assert f" of {frames} frames decode" in msg and f".{ext}" in msg and "data.sources" in msg, msg
    assert "\n" not in msg


def test_audio_outlasting_the_video_is_not_truncation(tmp_path):
    """A whole Matroska file whose header has only the container duration (no per-track DURATION tag), which
    its audio stretches 1 s past the video, is accepted; cut, it is still rejected."""
    full = _matroska(tmp_path / "av.mkv", 48, 24, audio_s=3.0)
    data = full.read_bytes()
    assert data.count(b"DURATION") == 2  # the tags ffmpeg writes per track; rename them away (same length)
    untagged = tmp_path / "untagged.mkv"
    untagged.write_bytes(data.replace(b"DURATION", b"DURATIOX"))
    cut = tmp_path / "untagged_cut.mkv"
    cut.write_bytes(untagged.read_bytes()[: len(data) * 2 // 3])
    raw = tmp_path / "raw"
    assert fetch.fetch_sources([str(untagged)], raw, progress=False)["videos"][0]["frames"] == 48
    with pytest.raises(FetchError, match="not a complete video \\(truncated: "):
        fetch.fetch_sources([str(cut)], raw, progress=False)


def test_embedded_default_sources_pass_the_length_check(tmp_path):
    """The wheel-shipped real clips and a synthetic flight of the samples stage (the embedded default's
    data.sources, params.yaml) still fetch whole."""
    from gimbal.data.samples import SamplesConfig, make_samples

    s = SamplesConfig()
    flights = make_samples(s.images[:1], tmp_path / "samples", s.width, s.height, s.frames, s.fps, seed=0,
                           crf=s.crf, progress=False)
    default = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["sources"]
    sources = [*(src for src in default if src.startswith("pkg:")), *map(str, flights)]
    assert len(sources) == 3
    manifest = fetch.fetch_sources(sources, tmp_path / "raw", progress=False)
    assert [v["frames"] for v in manifest["videos"]] == [250, 120, s.frames]  # bikes, carphone_pristine, flight
