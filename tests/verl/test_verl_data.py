"""The RLHF parquet export, read back through verl's dataset code: the local engine's prompt ids."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from verl_helpers import make_codes, make_records

from omni_r1.training.rollout import build_prompts
from omni_r1.verl.data import rlhf_rows, write_rlhf_parquet
from omni_r1.verl.settings import VerlPaths, hydra_args, verl_overrides

pytest.importorskip("verl")


def _dataset(compose_verl, cfg, parquet, checkpoint):
    from transformers import AutoTokenizer
    from verl.utils.import_utils import load_extern_object

    paths = VerlPaths(str(checkpoint), str(parquet), str(parquet), "ck", "agent_loops.yaml")
    data_config = compose_verl(hydra_args(verl_overrides(cfg, "omni_r1", paths))).data
    dataset_cls = load_extern_object(data_config.custom_cls.path, data_config.custom_cls.name)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return dataset_cls(data_files=[str(parquet)], tokenizer=tokenizer, config=data_config)


def test_export_has_verls_columns_and_our_fields(tiny_checkpoint, tmp_path):
    _, tiny = tiny_checkpoint
    records = make_records(3)
    path = write_rlhf_parquet(rlhf_rows(records, make_codes(records, tiny.layout), "perpo_train"), tmp_path / "t.parquet")
    table = pq.read_table(path).to_pylist()
    assert [row["reward_model"]["ground_truth"] for row in table] == ["B", "42", "red"]
    assert table[0]["extra_info"]["choices"] == ["cat", "dog"]
    assert [row["extra_info"]["answer_type"] for row in table] == ["choice", "numeric", "text"]
    assert table[1]["data_source"] == "omni_r1/test" and table[1]["ability"] == "natural"
    assert table[2]["images"][0]["bytes"] == records[2].input_images[0]
    assert len(table[0]["extra_info"]["input_codes"][0]) == tiny.layout.tokens_per_image


def test_missing_codes_name_the_record_and_image(tiny_checkpoint):
    records = make_records(2)
    codes = make_codes(records, tiny_checkpoint[1].layout)
    del codes[("rec1", "input_0")]
    with pytest.raises(KeyError, match=r"perpo_train: record 'rec1', image 'input_0'"):
        rlhf_rows(records, codes, "perpo_train")


def test_verl_dataset_gives_the_local_engines_prompt_ids(compose_verl, cfg, tiny_checkpoint, tmp_path):
    from verl import DataProto
    from verl.utils.dataset.rl_dataset import collate_fn

    folder, tiny = tiny_checkpoint
    records = make_records(5)
    codes = make_codes(records, tiny.layout)
    local = build_prompts(records, codes, tiny.layout, tiny.tokenizer, "perpo_train")
    parquet = write_rlhf_parquet(rlhf_rows(records, codes, "perpo_train"), tmp_path / "train.parquet")

    dataset = _dataset(compose_verl, cfg, parquet, folder)
    assert len(dataset) == len(records)
    items = [dataset[i] for i in range(len(dataset))]
    for item, prompt in zip(items, local, strict=True):
        assert item["prompt_ids"] == prompt.prompt_ids.tolist()
        assert item["extra_info"]["record_id"] == prompt.record_id
    # the field survives verl's collation into a DataProto, as the agent loop receives it
    batch = DataProto.from_single_dict(collate_fn(items))
    assert isinstance(batch.non_tensor_batch["prompt_ids"], np.ndarray)
    assert list(batch.non_tensor_batch["prompt_ids"][3]) == local[3].prompt_ids.tolist()
