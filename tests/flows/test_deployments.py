"""prefect.yaml: its deployments load as Prefect deployments and its schedule validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule

from flows.serve import build_deployments, read_deployments


def test_deployments_build_from_their_flows(repo_root: Path) -> None:
    built = {deployment.name: deployment for deployment in build_deployments(repo_root / "prefect.yaml")}
    assert set(built) == {"pipeline", "retrain"}
    assert built["pipeline"].schedules in (None, [])
    crons = [schedule.schedule.cron for schedule in built["retrain"].schedules]
    assert crons == ["0 3 * * 1"]
    assert {d.flow_name for d in built.values()} == {"pipeline", "retrain"}


def test_declared_schedules_are_valid_cron(repo_root: Path) -> None:
    for spec in read_deployments(repo_root / "prefect.yaml"):
        for schedule in spec.get("schedules") or []:
            CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))
        assert (repo_root / spec["entrypoint"].split(":")[0]).is_file()


def test_a_bad_schedule_or_missing_deployments_fail(repo_root: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((repo_root / "prefect.yaml").read_text())
    data["deployments"][1]["schedules"][0]["cron"] = "61 3 * * 1"
    (tmp_path / "flows").symlink_to(repo_root / "flows")  # entrypoints resolve beside the file
    bad = tmp_path / "prefect.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError):
        build_deployments(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: x\n")
    with pytest.raises(ValueError, match="no 'deployments'"):
        read_deployments(empty)
