"""The served model: an Omni-R1 checkpoint as an MLflow ``pyfunc`` with a signature.

Request (one row per question): ``question`` (string) and ``images`` (list of base64-encoded
image files, PNG or any PIL format; may be empty). Response: ``answer`` (the text after
"Final Answer:", :func:`omni_r1.rewards.accuracy.extract_final_answer`), ``trajectory`` (the
generated interleaved text, ``<image>`` where an image was drawn) and ``generated_images``
(base64 PNGs decoded with the checkpoint's VQ decoder; empty without one). Decoding is greedy
with the ``generation`` budget of the params the model was logged with, the evaluation's
settings (paper §5).

Where the weights live (one copy per checkpoint): with ``storage.log_checkpoint_files`` the
checkpoint folder is an artifact of the logged model (small models); otherwise the model
records only ``checkpoint_uri`` (the DVC-tracked folder, an ``s3://`` prefix or an MLflow
artifact URI) and ``checkpoint_sha256`` (:func:`tree_sha256`), and loading fetches the
folder and refuses one whose content hash differs.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, Schema

from omni_r1.config import Config
from omni_r1.data.records import from_png, to_png
from omni_r1.tracking import tree_sha256

CHECKPOINT_ARTIFACT = "checkpoint"
MODEL_NAME = "model"  # name of the logged model inside its run


class ChecksumError(RuntimeError):
    """A fetched checkpoint whose content hash is not the recorded one."""


def model_signature() -> ModelSignature:
    inputs = Schema([ColSpec("string", "question"), ColSpec(Array("string"), "images")])
    outputs = Schema(
        [ColSpec("string", "answer"), ColSpec("string", "trajectory"), ColSpec(Array("string"), "generated_images")]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def fetch_checkpoint(uri: str, sha256: str, cfg: Config) -> Path:
    """The local folder of the checkpoint at ``uri``, verified against ``sha256``.

    ``uri``: a local path or ``file://`` URI (the DVC-tracked folder), an ``s3://`` prefix
    (downloaded with ``cfg.storage``), or any URI ``mlflow.artifacts.download_artifacts`` reads.
    """
    if uri.startswith("s3://"):
        from omni_r1 import storage as object_storage

        folder = Path(tempfile.mkdtemp(prefix="omni-r1-checkpoint-"))
        client = object_storage.make_client(cfg.storage)
        object_storage.download_dir(client, object_storage.parse_s3_uri(uri), folder, cfg.storage)
    elif "://" in uri and not uri.startswith("file://"):
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    else:
        folder = Path(uri.removeprefix("file://"))
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: checkpoint folder not found (fetch it with `dvc pull` or `dvc checkout`)")
    found = tree_sha256(folder)
    if found != sha256:
        raise ChecksumError(f"{uri}: checkpoint content hash {found} differs from the recorded {sha256}")
    return folder


def answer_questions(
    omni: Any, cfg: Config, questions: Sequence[str], images: Sequence[Sequence[bytes]]
) -> list[dict[str, Any]]:
    """Greedy interleaved answers; one ``{"answer", "trajectory", "generated_images"}`` per question."""
    from omni_r1.eval.evaluate import decoding_kwargs, generate_responses
    from omni_r1.model.images import decode_codes, encode_images
    from omni_r1.model.packing import pack_prompt
    from omni_r1.rewards.accuracy import extract_final_answer
    from omni_r1.trajectory import Trajectory

    prompts = []
    for question, files in zip(questions, images, strict=True):
        pictures = [from_png(data) for data in files]
        codes = list(encode_images(omni, pictures)) if pictures else []  # [H*W] each
        trajectory = Trajectory(question=question, input_images=tuple(pictures), final_answer="")
        prompts.append(pack_prompt(trajectory, omni.layout, omni.tokenizer, codes))  # [P_i]
    generations = generate_responses(
        omni, prompts, decoding_kwargs(cfg.eval), cfg.generation.max_images_per_answer, cfg.eval.batch_size,
        cfg.eval.decoding,
    )  # fmt: skip
    rows = []
    for generation in generations:
        drawn = []
        if omni.vq_decoder is not None and generation.codes.shape[0]:
            drawn = decode_codes(omni.vq_decoder, omni.model.model.vqmodel, generation.codes)
        rows.append({
            "answer": extract_final_answer(generation.text) or "",
            "trajectory": generation.text,
            "generated_images": [base64.b64encode(to_png(image)).decode() for image in drawn],
        })  # fmt: skip
    return rows


class OmniR1Model(mlflow.pyfunc.PythonModel):
    """``pyfunc`` wrapper: loads the checkpoint once, answers a DataFrame of questions."""

    def load_context(self, context: Any) -> None:
        from omni_r1.model.loading import load_omni

        settings = context.model_config
        self.cfg = Config.model_validate(settings["params"])
        folder = context.artifacts.get(CHECKPOINT_ARTIFACT)
        if folder is None:
            folder = fetch_checkpoint(settings["checkpoint_uri"], settings["checkpoint_sha256"], self.cfg)
        elif tree_sha256(folder) != settings["checkpoint_sha256"]:
            raise ChecksumError(f"{folder}: logged checkpoint differs from {settings['checkpoint_sha256']}")
        torch.manual_seed(self.cfg.run.seed)
        self.omni = load_omni(self.cfg, model_dir=folder)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        questions = [str(q) for q in model_input["question"]]
        column = model_input["images"] if "images" in model_input else [[]] * len(questions)
        images = [[base64.b64decode(item) for item in (row if row is not None else [])] for row in column]
        return pd.DataFrame(answer_questions(self.omni, self.cfg, questions, images))


def runtime_requirements() -> list[str]:
    """The installed versions the model runs with (the omni_r1 package itself comes from this project)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "transformers", "pandas", "pillow")]


def log_served_model(
    cfg: Config, folder: Path, checkpoint_uri: str, registered_model: str, tags: Mapping[str, str]
) -> Any:
    """Log the checkpoint as a ``pyfunc`` model of the active run and register it.

    Args:
        cfg: the resolved params (stored in the model; ``storage.log_checkpoint_files`` decides
            whether the files go with it).
        folder: the local checkpoint folder (hashed; copied only when logging files).
        checkpoint_uri: where the one stored copy lives (DVC-tracked path or ``s3://`` URI).
        registered_model: registry name; a new version is created.
        tags: set on the logged model and the new version.
    Returns:
        MLflow's ``ModelInfo`` (``registered_model_version``, ``model_uri``).
    """
    settings = {
        "params": cfg.model_dump(mode="json"),
        "checkpoint_uri": checkpoint_uri,
        "checkpoint_sha256": tree_sha256(folder),
    }
    artifacts = {CHECKPOINT_ARTIFACT: str(folder)} if cfg.storage.log_checkpoint_files else None
    return mlflow.pyfunc.log_model(
        pip_requirements=runtime_requirements(),
        name=MODEL_NAME,
        python_model=OmniR1Model(),
        artifacts=artifacts,
        model_config=settings,
        signature=model_signature(),
        registered_model_name=registered_model,
        tags=dict(tags),
    )
