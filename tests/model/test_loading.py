"""Device placement and VQ decoder resolution of omni_r1.model.loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from omni_r1.model.loading import resolve_device, resolve_vq_decoder_path


def test_cuda_device_follows_local_rank() -> None:
    assert resolve_device("cuda", {"LOCAL_RANK": "3"}) == torch.device("cuda", 3)
    assert resolve_device("cuda", {}) == torch.device("cuda", 0)
    assert resolve_device("cpu", {"LOCAL_RANK": "3"}) == torch.device("cpu")


def test_plain_vq_path_is_kept(tmp_path: Path) -> None:
    assert resolve_vq_decoder_path(None) is None
    assert resolve_vq_decoder_path(str(tmp_path / "vqgan.ckpt")) == tmp_path / "vqgan.ckpt"


def test_hub_vq_path_is_read_through_hf_hub_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An hf:// path resolves through huggingface_hub's own cache layout (offline, no request)."""
    import huggingface_hub.constants as hub_constants

    commit = "0" * 40
    repo = tmp_path / "models--GAIR--Anole-7b-v0.1"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    target = repo / "snapshots" / commit / "tokenizer" / "vqgan.ckpt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    path = resolve_vq_decoder_path("hf://GAIR/Anole-7b-v0.1/tokenizer/vqgan.ckpt")
    assert path.read_bytes() == b"weights"
    with pytest.raises(ValueError, match="expected hf://<owner>/<repo>/<file>"):
        resolve_vq_decoder_path("hf://GAIR/vqgan.ckpt")
