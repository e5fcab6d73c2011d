"""irn.backbone_from_cam: IRN's frozen backbone starts from the CAM classifier's weights."""
import pytest
import torch

from csdseg.models import build_model
from csdseg.models.irn import IRNet


def test_backbone_copied_from_a_cam_classifier():
    torch.manual_seed(0)
    cam = build_model("resnet10t_cam", 5, "none")
    irn = IRNet("resnet10t", "none")
    assert irn.load_backbone_from_cam(cam.state_dict()) == sum(
        1 for k in irn.state_dict() if k.startswith("backbone."))
    x = torch.randn(1, 3, 64, 64)
    cam.eval(), irn.eval()
    with torch.no_grad():
        # the last backbone level of IRN equals the CAM network's features
        assert torch.allclose(irn.backbone_features(x)[-1], cam.features(x), atol=1e-6)


def test_backbone_from_another_architecture_is_refused():
    cam = build_model("resnet18_cam", 5, "none")
    with pytest.raises(ValueError, match="must be the CAM model's architecture"):
        IRNet("resnet10t", "none").load_backbone_from_cam(cam.state_dict())
