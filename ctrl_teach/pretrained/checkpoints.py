"""Checkpoint files: a state dict (``NAME.pt``) beside a JSON description (``NAME.json``).

Writes are atomic (write a temporary file in the same folder, flush, then ``os.replace``),
so an interrupted save never leaves a half-written checkpoint behind. Reads verify the
SHA-256 recorded in the JSON before unpickling with ``torch.load(weights_only=True)``, and
every failure raises :class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import torch

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "read_meta",
    "atomic_write_bytes",
]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or does not match its network.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + ``os.replace``).

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are ordinary package data
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(stem: str | os.PathLike, model: torch.nn.Module, meta: dict) -> Path:
    """Save ``model.state_dict()`` to ``stem.pt`` and ``meta`` (+ its SHA-256) to ``stem.json``.

    ``meta`` must be JSON-serialisable; it should describe how to rebuild the network
    (``meta["network"] = model.config``). Returns the JSON path.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    stem = Path(stem)
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, buffer)
    blob = buffer.getvalue()
    full = {**meta, "format_version": FORMAT_VERSION, "weights_file": stem.name + ".pt",
            "sha256": hashlib.sha256(blob).hexdigest(), "num_bytes": len(blob)}
    text = json.dumps(full, indent=2, sort_keys=True) + "\n"  # fails early if not serialisable
    atomic_write_bytes(stem.with_suffix(".pt"), blob)
    atomic_write_bytes(stem.with_suffix(".json"), text.encode())
    return stem.with_suffix(".json")


def read_meta(stem: str | os.PathLike) -> dict:
    """Read and validate ``stem.json``."""
    path = Path(stem).with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint description not found")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    missing = {"sha256", "num_bytes", "format_version"} - set(meta)
    if missing:
        raise CheckpointError(f"{path}: missing keys {sorted(missing)}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta['format_version']} is not "
                              f"supported (expected {FORMAT_VERSION})")
    return meta


def load_checkpoint(stem: str | os.PathLike, model: torch.nn.Module, meta: dict | None = None,
                    device=None) -> torch.nn.Module:
    """Load ``stem.pt`` into ``model`` after checking size and SHA-256 against ``stem.json``.

    Raises :class:`CheckpointError` (naming the file) when the weights are missing,
    truncated, corrupted, not a state dict, or do not fit ``model``.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    stem = Path(stem)
    meta = read_meta(stem) if meta is None else meta
    path = stem.with_suffix(".pt")
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    blob = path.read_bytes()
    if len(blob) != meta["num_bytes"]:
        raise CheckpointError(f"{path}: truncated or altered: {len(blob)} bytes, "
                              f"expected {meta['num_bytes']}")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta["sha256"]:
        raise CheckpointError(f"{path}: corrupted: SHA-256 {digest[:12]}... does not match "
                              f"{meta['sha256'][:12]}... recorded in {stem.with_suffix('.json')}")
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means a bad file
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only state dict ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[:3]
        raise CheckpointError(f"{path}: does not match the network described in "
                              f"{stem.with_suffix('.json')}: {' '.join(first)}") from None
    return model.to(device) if device is not None else model
