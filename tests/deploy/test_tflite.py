"""The five shared int8 ``.tflite`` models (MLPerf Tiny + TFLM person detection) import, and leanml's C engine
equals the pip TFLite Micro interpreter (reference kernels) on every output element: seeded random inputs, the
all-zero input, and real images (Fashion-MNIST test images resized to the model's input) for the image models."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from leanml.deploy.engine import DeployConfig, Deployment, deploy_graph, export_project
from leanml.deploy.tflite import load_tflite

pytest.importorskip("tflite", reason="the .tflite reader: pip install 'leanml[tflite]'")
tflm = pytest.importorskip("tflite_micro", reason="the oracle: pip install tflite-micro")

MODELS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "tflite"
# model -> (input shape NHWC, sha256 of the file) as the shared README lists them
MODELS = {
    "ad01_int8": ((1, 640), "87cf24194ef93d1d9b11a591d805526b98008e351655d29883c825c9c106ba24"),
    "kws_ref_model": ((1, 49, 10, 1), "aeea436800704fce17b17292e4412630ad856e9d777c044c64ef748a880bd0ae"),
    "pretrainedResnet_quant": ((1, 32, 32, 3), "3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415"),
    "person_detect": ((1, 96, 96, 1), "808cfdfc0cf3a6fa6f6fa26bfa379ea97c16d5db7334637766e39c3408502e9d"),
    "vww_96_int8": ((1, 96, 96, 3), "597a384c8c2c8a1276f04702f25013b7838f2f814f1ca7c174d295b73e3d6b7b"),
}
IMAGE_MODELS = ("pretrainedResnet_quant", "person_detect", "vww_96_int8")
# the README's output codes (hex) for the zero and the rand input, where it lists them
README_OUTPUTS = {
    "kws_ref_model": ("ff80808080ff808080808081", "8080808080808080807f8080"),
    "pretrainedResnet_quant": ("bb800c8385848380aa80", "80829a4b80809a808080"),
    "person_detect": ("48b8", "6b95"),
    "vww_96_int8": ("748c", "7888"),
}


def model_path(name: str) -> Path:
    path = MODELS_DIR / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is missing (the shared reference models)")
    return path


def readme_rand_input(shape: tuple[int, ...]) -> np.ndarray:
    """The shared README's `rand` input: numpy default_rng(0) int16 in [-128, 128) as int8, NHWC."""
    n = int(np.prod(shape))
    return np.random.default_rng(0).integers(-128, 128, size=n, dtype=np.int16).astype(np.int8).reshape(shape)


def real_images(shape: tuple[int, ...], n: int) -> np.ndarray:
    """``n`` Fashion-MNIST test images resized (nearest) to the model's H x W, channels repeated, as int8 codes
    pixel - 128: each of the three vision models maps its uint8 pixel p to code p - 128 (vww: p / 255 with zero
    point -128; ResNet-8: p with scale 1; person detection: about p / 127.5 - 1 with zero point -1)."""
    from leanml.data.fashion_mnist import load_split

    images = load_split("test", subset=n).images.numpy().astype(np.float32)  # (n, 1, 28, 28)
    pixels = np.round(images * 255.0) if images.max() <= 1.0 else images
    _, h, w, c = shape
    rows, cols = (np.arange(h) * 28) // h, (np.arange(w) * 28) // w
    resized = pixels[:, 0][:, rows][:, :, cols]  # (n, h, w)
    return (np.repeat(resized[..., None], c, axis=3) - 128).astype(np.int8)


def tflm_outputs(path: Path, inputs: np.ndarray) -> np.ndarray:
    interpreter = tflm.runtime.Interpreter.from_file(str(path), arena_size=8 << 20)
    outs = []
    for x in inputs:
        interpreter.set_input(x[None], 0)
        interpreter.invoke()
        outs.append(interpreter.get_output(0).reshape(-1).copy())
    return np.stack(outs)


def leanml_outputs(dep: Deployment, inputs: np.ndarray) -> np.ndarray:
    h, w, c = dep.graph.input_shape
    nchw = inputs.reshape(len(inputs), h, w, c).transpose(0, 3, 1, 2)
    return dep.model.run_int8(nchw).astype(np.int8)


@pytest.fixture(scope="module", params=sorted(MODELS))
def deployed(request: pytest.FixtureRequest) -> tuple[str, Path, Deployment]:
    name = request.param
    path = model_path(name)
    digest = MODELS[name][1]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    return name, path, deploy_graph(load_tflite(path), DeployConfig())


def test_bit_exact_with_tflite_micro_on_random_and_zero_inputs(deployed: tuple[str, Path, Deployment]) -> None:
    name, path, dep = deployed
    shape = MODELS[name][0]
    rng = np.random.default_rng(7)
    inputs = np.concatenate([np.zeros((1, *shape[1:]), np.int8), readme_rand_input(shape),
                             rng.integers(-128, 128, size=(6, *shape[1:])).astype(np.int8)])  # fmt: skip
    want = tflm_outputs(path, inputs)
    got = leanml_outputs(dep, inputs)
    assert got.shape == want.shape
    assert np.array_equal(got, want), f"{name}: {int((got != want).sum())} of {want.size} output codes differ"
    if name in README_OUTPUTS:
        assert (got[0].tobytes().hex(), got[1].tobytes().hex()) == README_OUTPUTS[name]


def test_bit_exact_with_tflite_micro_on_real_images(deployed: tuple[str, Path, Deployment]) -> None:
    name, path, dep = deployed
    shape = MODELS[name][0]
    if name not in IMAGE_MODELS:
        pytest.skip(f"{name} takes audio features, not images")
    inputs = real_images(shape, 8)
    assert len(np.unique(inputs)) > 20  # real pictures, not a constant
    assert np.array_equal(leanml_outputs(dep, inputs), tflm_outputs(path, inputs))


def test_imported_graph_accounts_the_readme_macs() -> None:
    macs = {"vww_96_int8": 7_489_664, "kws_ref_model": 2_656_768, "pretrainedResnet_quant": 12_501_632,
            "ad01_int8": 264_192, "person_detect": 7_157_888}  # fmt: skip
    for name, want in macs.items():
        assert load_tflite(model_path(name)).macs() == want, name


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_imported_model_is_clean_under_address_and_undefined_behaviour_sanitizers(
    deployed: tuple[str, Path, Deployment], tmp_path: Path
) -> None:
    name, _, dep = deployed
    out = export_project(dep, tmp_path / name)
    flags = "-std=c99 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=all"
    proc = subprocess.run(["make", "-s", "run", f"CFLAGS={flags}", "CC=gcc"], cwd=out, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    if "cannot find" in proc.stderr and "asan" in proc.stderr:
        pytest.skip("gcc has no AddressSanitizer runtime here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == dep.model.output_size


def test_memory_timeline_stays_inside_the_arena(deployed: tuple[str, Path, Deployment]) -> None:
    from leanml.deploy.engine import memory_timeline

    _, _, dep = deployed
    timeline = memory_timeline(dep)
    assert timeline["buffers"] and timeline["arena_bytes"] == dep.layout.arena_bytes
    assert all(b["offset"] >= 0 and b["offset"] + b["size"] <= timeline["arena_bytes"] for b in timeline["buffers"])
