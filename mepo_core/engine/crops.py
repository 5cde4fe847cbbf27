"""ROI crops on the device that runs the model: the frame goes up once, every crop is sampled there, in one batch.

Same geometry as ``detect.roi.crop_roi`` (cv2.warpAffine, bilinear, zero border): crop pixel (u, v) samples the
frame at ``matrix @ (u, v, 1)``, pixel centres at integer coordinates.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


_uploaded: dict = {}


def frame_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1] on ``device``. The last frame's upload is reused, so the
    pose, hand and face models of one frame share a single host-to-device copy."""
    key = (id(image), image.__array_interface__["data"][0], image.shape, str(device))
    if _uploaded.get("key") != key:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float().div_(255.0)
        _uploaded.clear()
        _uploaded.update(key=key, tensor=tensor, image=image)    # holding the image keeps its id from being reused
    return _uploaded["tensor"]


def crop_batch(frame: torch.Tensor, matrices: np.ndarray, size: int) -> torch.Tensor:
    """frame (1, 3, H, W), matrices (N, 2, 3) crop->frame pixels -> (N, size, size, 3) crops (NHWC, [0, 1])."""
    _, _, height, width = frame.shape
    m = torch.as_tensor(np.asarray(matrices), dtype=torch.float32, device=frame.device)
    axis = torch.arange(size, dtype=torch.float32, device=frame.device)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)               # (S*S, 3)
    xy = torch.einsum("nij,pj->npi", m, uv1)                                            # (N, S*S, 2) frame px
    scale = torch.tensor([2.0 / width, 2.0 / height], device=frame.device)
    grid = ((xy + 0.5) * scale - 1.0).reshape(len(m), size, size, 2)                    # align_corners=False
    crops = F.grid_sample(frame.expand(len(m), -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    return crops.permute(0, 2, 3, 1)
