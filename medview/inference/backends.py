"""Run a model's network: TorchScript, ONNX Runtime or a MONAI bundle behind one ``predict`` interface.

Every backend takes a float32 batch ``(N, C, z, y, x)`` and returns ``(N, K, z, y, x)`` float32 (the
network's raw output: logits or probabilities as the card says).  torch and onnxruntime are imported
inside the functions so that ``import medview`` stays fast.

Devices: ``'auto'`` picks CUDA when it is available, else the CPU; ``'cuda'`` without a usable GPU is an
error that says so rather than a silent fall-back.

MONAI bundles are loaded offline from a bundle folder: its ``models/model.ts`` (TorchScript) when there
is one, else ``configs/inference.json``'s ``network_def`` built with ``monai.bundle.ConfigParser`` and
``models/model.pt`` loaded into it.  Zipped bundles and bundles that must be downloaded are not supported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medview.core.errors import MedviewError
from medview.inference.cards import ModelCard, weights_file

DEVICES = ("auto", "cpu", "cuda")


class Backend(Protocol):
    """What the pipeline needs from a loaded network."""

    device: str

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(N, C, z, y, x)`` float32 in, ``(N, K, z, y, x)`` float32 out."""

    def predict_tensor(self, batch: Any) -> Any:
        """The same on a torch tensor (the sliding-window loop works on tensors)."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str, *, available: bool | None = None) -> str:
    """``'cpu'`` or ``'cuda'`` for a requested ``device`` (``'auto'``, ``'cpu'``, ``'cuda'``)."""
    if device not in DEVICES:
        raise MedviewError(f"Device must be one of {', '.join(DEVICES)}, got {device!r}")
    has_cuda = cuda_available() if available is None else available
    if device == "cuda" and not has_cuda:
        raise MedviewError("Device 'cuda' was requested but no CUDA GPU is usable here (torch sees none); "
                           "use --device cpu or auto")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def _check_output(out: np.ndarray, batch: np.ndarray, name: str) -> np.ndarray:
    if out.ndim != 5 or out.shape[0] != batch.shape[0] or out.shape[2:] != batch.shape[2:]:
        raise MedviewError(f"Model {name} returned shape {tuple(out.shape)} for input {tuple(batch.shape)}; "
                           "expected (N, K, z, y, x) with the input's N, z, y, x")
    return out.astype(np.float32, copy=False)


class TorchBackend:
    """A torch module (TorchScript, or a network built from a MONAI bundle) on CPU or CUDA."""

    def __init__(self, module: Any, device: str, name: str) -> None:
        import torch

        self.name = name
        self.device = device
        self._torch = torch
        self.module = module.to(torch.device(device)).eval()

    def predict_tensor(self, batch: Any) -> Any:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(batch.to(self.device, dtype=torch.float32))
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim != 5 or out.shape[0] != batch.shape[0] or tuple(out.shape[2:]) != tuple(batch.shape[2:]):
            raise MedviewError(f"Model {self.name} returned shape {tuple(out.shape)} for input {tuple(batch.shape)}; "
                               "expected (N, K, z, y, x) with the input's N, z, y, x")
        return out.float()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        out = self.predict_tensor(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return _check_output(out.cpu().numpy(), batch, self.name)

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Class scores ``(N, K)`` of a classification network."""
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return _as_scores(out.float().cpu().numpy(), batch, self.name)


def _as_scores(out: np.ndarray, batch: np.ndarray, name: str) -> np.ndarray:
    """A classification network's output as ``(N, K)``: ``(N, K)`` or ``(N, K, 1, 1, 1)`` accepted."""
    out = np.asarray(out)
    if out.shape[0] != batch.shape[0] or (out.ndim > 2 and int(np.prod(out.shape[2:])) != 1):
        raise MedviewError(f"Classification model {name} returned shape {tuple(out.shape)} for input "
                           f"{tuple(batch.shape)}; expected (N, K)")
    return out.reshape(out.shape[0], -1).astype(np.float32, copy=False)


class OnnxBackend:
    """An ONNX model in ONNX Runtime (CPUExecutionProvider, or CUDAExecutionProvider on 'cuda')."""

    def __init__(self, path: Path, device: str, name: str) -> None:
        import onnxruntime as ort

        self.name = name
        available = ort.get_available_providers()
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise MedviewError("Device 'cuda' was requested but this ONNX Runtime has no CUDA provider "
                                   f"(it has {', '.join(available)}); install onnxruntime-gpu or use --device cpu")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.device = device
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings about unused initialisers on stderr
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise MedviewError(f"ONNX Runtime could not load {path.name}: {str(exc).strip().splitlines()[-1]}",
                               path=str(path)) from None
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        out = self.session.run(None, {self.input_name: batch})[0]
        return _check_output(np.asarray(out), batch, self.name)

    def predict_tensor(self, batch: Any) -> Any:
        import torch

        return torch.from_numpy(self.predict(batch.detach().cpu().numpy()))

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Class scores ``(N, K)`` of a classification network."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return _as_scores(self.session.run(None, {self.input_name: batch})[0], batch, self.name)


def _load_torchscript(path: Path, name: str) -> Any:
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            # Deprecated in favour of torch.export, but TorchScript is what model zoos ship today.
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.load.*")
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise MedviewError(f"{path.name} is not a TorchScript model torch can load: "
                           f"{str(exc).strip().splitlines()[0]}", path=str(path)) from None


def _load_monai_bundle(folder: Path, name: str) -> Any:
    """The network of an unpacked MONAI bundle, built offline."""
    if not folder.is_dir():
        raise MedviewError(f"MONAI bundle {folder} must be an unpacked bundle folder (zipped bundles are not "
                           "supported yet)", path=str(folder))
    script = folder / "models" / "model.ts"
    if script.is_file():
        return _load_torchscript(script, name)
    weights = folder / "models" / "model.pt"
    config = folder / "configs" / "inference.json"
    if not (weights.is_file() and config.is_file()):
        raise MedviewError(f"MONAI bundle {folder} needs models/model.ts, or models/model.pt with "
                           "configs/inference.json", path=str(folder))
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(str(config))
        key = "network_def" if "network_def" in parser.get() else "network"
        network = parser.get_parsed_content(key)
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        network.load_state_dict(state)
    except MedviewError:
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, ImportError, json.JSONDecodeError) as exc:
        raise MedviewError(f"MONAI bundle {folder} could not be built offline: {str(exc).strip().splitlines()[0]}",
                           path=str(folder)) from None
    return network


def device_for(card: ModelCard, device: str) -> str:
    """The device ``card``'s network would run on for a requested ``device``; an error if unusable.

    Cheap (no model is loaded): commands call it before reading a study.
    """
    return _onnx_device(device) if card.weights.format == "onnx" else resolve_device(device)


def load_backend(card: ModelCard, device: str = "auto") -> Backend:
    """The card's network, loaded for ``device`` (``'auto'``, ``'cpu'`` or ``'cuda'``)."""
    resolved = device_for(card, device)
    fmt = card.weights.format
    if fmt == "torchscript":
        return TorchBackend(_load_torchscript(card.weights.path, card.name), resolved, card.name)
    if fmt == "onnx":
        return OnnxBackend(card.weights.path, resolved, card.name)
    if fmt == "monai_bundle":
        weights_file(card.weights)  # clear error when the bundle has no model file
        return TorchBackend(_load_monai_bundle(card.weights.path, card.name), resolved, card.name)
    raise MedviewError(f"Model {card.name}: weights format {fmt!r} is not supported")


def _onnx_device(device: str) -> str:
    """ONNX Runtime's device: 'auto' means CUDA only when its CUDA provider is installed."""
    if device not in DEVICES:
        raise MedviewError(f"Device must be one of {', '.join(DEVICES)}, got {device!r}")
    import onnxruntime as ort

    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise MedviewError("Device 'cuda' was requested but this ONNX Runtime has no CUDA provider (it has "
                           f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use --device cpu")
    if device != "auto":
        return device
    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
