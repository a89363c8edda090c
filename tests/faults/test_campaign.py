"""A miniature of the fault campaign (benchmarks/faults): each section's machinery on a few
cases, so ``make faults`` keeps working; the campaign itself runs only in ``make faults``."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from benchmarks.faults import corrupt, exposure, forked, fuzz
from benchmarks.faults.report import Results, markdown
from omni_r1.model.loading import (
    recover_interrupted_write,
    verify_folder,
    write_folder_atomically,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def rewrite_forever(folder: Path) -> None:
    """Save the same checkpoint folder again and again (killed from outside)."""
    payload = random.Random(0).randbytes(1 << 20)
    while True:
        write_folder_atomically(folder / "ckpt", lambda tmp: (tmp / "weights.bin").write_bytes(payload))


def test_sigkill_during_atomic_saves_never_leaves_a_broken_folder(tmp_path):
    rng = random.Random(1)
    write_folder_atomically(tmp_path / "ckpt", lambda tmp: (tmp / "weights.bin").write_bytes(b"first"))
    for _ in range(3):
        process = forked.start(lambda: rewrite_forever(tmp_path), tmp_path, tmp_path / "log.txt")
        time.sleep(rng.uniform(0.2, 0.6))
        assert forked.kill(process)  # it never ends by itself
        recover_interrupted_write(tmp_path / "ckpt")  # what the next save does first
        assert verify_folder(tmp_path / "ckpt") == 1
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_fuzzed_outputs_score_in_range_without_exceptions(cfg, tmp_path):
    from tiny_models import build_tiny_for_tests

    from omni_r1.model.tiny import save_tiny

    folder = save_tiny(build_tiny_for_tests(seed=0), tmp_path / "tiny")
    figures = fuzz.run(cfg, folder, cases=256, seed=3, log=lambda _: None)
    assert figures.cases == 256 and all(count == 64 for count in figures.by_kind.values())
    assert (figures.exceptions, figures.parse_exceptions, figures.out_of_range) == (0, 0, 0), figures.examples


def test_fuzz_counts_a_scorer_that_raises(cfg):
    figures = fuzz.FuzzFigures()

    def broken(rows, owners):
        raise ZeroDivisionError("scorer bug")

    fuzz.score_cases([object(), object()], [None, None], figures, broken)
    assert figures.exceptions == 2 and "ZeroDivisionError" in figures.examples[0]


def test_corrupted_model_files_are_detected_and_named(cfg, tmp_path):
    from tiny_models import build_tiny_for_tests

    from omni_r1.model.loading import load_omni
    from omni_r1.model.tiny import save_tiny

    folder = save_tiny(build_tiny_for_tests(seed=0), tmp_path / "tiny")
    rng = random.Random(5)
    for kind in corrupt.KINDS:
        outcome = corrupt.inject_and_load(
            folder, "model.safetensors", lambda f: load_omni(cfg, model_dir=f), kind, rng, tmp_path / "scratch"
        )
        assert outcome == "named", outcome
    # a loader that does not check is caught as silent
    outcome = corrupt.inject_and_load(folder, "config.json", lambda f: None, "bitflip", rng, tmp_path / "scratch")
    assert outcome == "silent"


def test_project_code_loads_checkpoints_without_pickle_and_binds_loopback():
    assert exposure.unsafe_loads(REPO_ROOT) == []
    assert exposure.exposed_binds(REPO_ROOT) == []
    assert len(exposure.published_ports(REPO_ROOT)) >= 3  # the compose file was really read


def test_scanners_find_what_they_look_for(tmp_path):
    (tmp_path / "omni_r1").mkdir()
    (tmp_path / "omni_r1" / "bad.py").write_text(
        "import torch, pickle\nx = torch.load('a')\ny = torch.load('b', weights_only=False)\n"
        "z = pickle.loads(b'')\nhost = '0.0.0.0'\nok = torch.load('c', weights_only=True)\n"
    )
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "compose.yaml").write_text(
        'services:\n  a:\n    ports: ["${BIND_ADDRESS:-127.0.0.1}:1:2"]\n  b:\n    ports: ["0.0.0.0:3:4", "5:6"]\n'
    )
    loads = exposure.unsafe_loads(tmp_path)
    assert [line.split(":")[1] for line in loads] == ["2", "3", "4"]
    binds = exposure.exposed_binds(tmp_path)
    assert len(binds) == 3 and "bad.py:5" in binds[-1]
    (tmp_path / "log.txt").write_text(f"key={exposure.SECRETS['OPENAI_API_KEY']}")
    assert exposure.leaks([tmp_path], exposure.SECRETS) == [f"{tmp_path / 'log.txt'}: OPENAI_API_KEY"]


def test_report_lists_each_figure_on_its_own_line():
    results = Results(argv=["--fuzz", "10"], seconds=12.0)
    results.fuzz = fuzz.FuzzFigures(cases=10, exceptions=1)
    text = markdown(results)
    figures = results.figures()
    assert figures["fuzz_cases"] == 10 and figures["fuzz_exceptions"] == 1
    assert "| fuzz_cases | 10 |" in text and not results.all_survived()
    assert json.loads(json.dumps(figures)) == figures


def test_config_fuzz_names_every_key_and_mutates_the_key_it_names(tmp_path):
    from benchmarks.faults import config_fuzz

    figures = config_fuzz.run(REPO_ROOT / "params.yaml", 60, seed=3)
    assert figures.cases == 60 and figures.named == 60 and figures.loaded == figures.other_errors == 0
    # the mutation written is the one the error must name
    permissive = tmp_path / "params.yaml"
    permissive.write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    data, overlay, must_name = config_fuzz.case(
        __import__("yaml").safe_load(permissive.read_text()), "data.omnibench.natural.vstar", "unknown_key", "params"
    )
    assert must_name == "data.omnibench.natural.no_such_key" and overlay is None
    assert data["data"]["omnibench"]["natural"]["no_such_key"] == 1
