"""Publishing to and reading from a Hub dataset repository, without a network.

Push is covered up to the wire: the exact commit operations (paths and bytes) and the clear
failures when logged out, offline or unable to reach the Hub. Pull and browse run offline
against a local Hub cache that the tests lay out from a push plan, in the layout the real
``huggingface_hub`` downloads produce (checked with its own ``scan_cache_dir``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, constants, scan_cache_dir
from huggingface_hub.file_download import repo_folder_name
from test_site import SITE_SUITE, make_leaderboard
from typer.testing import CliRunner

from sbbench.cli import app
from sbbench.cli.common import UserError
from sbbench.leaderboard import store
from sbbench.leaderboard.hub import HubError, PushPlan, plan_push, push
from sbbench.leaderboard.render import leaderboard_frame, to_markdown
from sbbench.leaderboard.store import load_entries, read_entry, write_entry
from sbbench.suite import SUITES, Suite

REPO_ID = "sbbench-tests/leaderboard"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LOCAL_NAMES = ["erm.json", "example-mixup.json", "oracle-randomize-s.json"]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard folder with three real entries (one of them stale)."""
    root = tmp_path_factory.mktemp("hub-local")
    make_leaderboard(root, tmp_path_factory.getbasetemp() / "result-cache")
    return root


@pytest.fixture(scope="module")
def remote(local: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Hub repository holds: ERM and the oracle as scored locally, plus an entry nobody has locally."""
    root = tmp_path_factory.mktemp("hub-remote")
    for name in ("erm", "oracle-randomize-s"):
        write_entry(root, SITE_SUITE, read_entry(local / "site-v1" / "entries" / f"{name}.json"))
    erm = read_entry(local / "site-v1" / "entries" / "erm.json")
    other = erm.model_copy(update={"method": erm.method.model_copy(update={"name": "erm-elsewhere"})})
    write_entry(root, SITE_SUITE, other)
    return root


def lay_out_hub_cache(plan: PushPlan, cache: Path, repo_id: str = REPO_ID, commit: str = COMMIT) -> Path:
    """The Hub cache after downloading a repository made of ``plan``'s files at ``commit``.

    Blobs are named by their git object id and the snapshot holds relative symlinks to them,
    with ``refs/main`` naming the commit: the layout ``huggingface_hub`` writes.
    """
    folder = cache / repo_folder_name(repo_id=repo_id, repo_type="dataset")
    for operation in plan.operations:
        data = operation.path_or_fileobj
        assert isinstance(data, bytes)
        blob = folder / "blobs" / hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = folder / "snapshots" / commit / operation.path_in_repo
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return folder / "snapshots" / commit


@pytest.fixture
def hub_cache(remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline machine whose Hub cache holds the remote repository; returns its snapshot folder."""
    cache = tmp_path / "hub-cache"
    snapshot = lay_out_hub_cache(plan_push(remote, None, [SITE_SUITE]), cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    register(monkeypatch, SITE_SUITE)
    return snapshot


def register(monkeypatch: pytest.MonkeyPatch, *suites: Suite) -> None:
    """Make ``suites`` known: by name (``--suite``) and among the suites whose entries are listed."""
    for suite in suites:
        monkeypatch.setitem(SUITES, suite.name, suite)
    monkeypatch.setattr(store, "ALL_SUITES", (*store.ALL_SUITES, *suites))


@pytest.fixture
def logged_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def invoke(args: list[str]) -> tuple[str, BaseException | None]:
    """Run the CLI in-process; a user error comes back as the exception, with its full message."""
    result = CliRunner().invoke(app, args, standalone_mode=False)
    return result.output, result.exception


def test_push_to_a_new_repository_sends_every_entry_the_tables_and_the_card(local: Path) -> None:
    plan = plan_push(local, None, [SITE_SUITE])
    entries = [f"site-v1/entries/{name}" for name in LOCAL_NAMES]
    assert plan.paths == [*entries, "site-v1/leaderboard.csv", "site-v1/LEADERBOARD.md", "README.md"]
    assert plan.changed_entries == entries and plan.parent_commit is None and plan.suites == ["site-v1"]
    sent = {op.path_in_repo: op.path_or_fileobj for op in plan.operations}
    for name in LOCAL_NAMES:
        assert sent[f"site-v1/entries/{name}"] == (local / "site-v1" / "entries" / name).read_bytes()
    frame = leaderboard_frame(load_entries(local, SITE_SUITE), SITE_SUITE)
    assert sent["site-v1/leaderboard.csv"] == frame.to_csv(index=False).encode()
    assert sent["site-v1/LEADERBOARD.md"] == to_markdown(frame, SITE_SUITE).encode()


def test_push_over_the_hub_snapshot_adds_only_new_entries_and_tabulates_the_union(
        local: Path, remote: Path, tmp_path: Path) -> None:
    base = lay_out_hub_cache(plan_push(remote, None, [SITE_SUITE]), tmp_path)
    plan = plan_push(local, base, [SITE_SUITE], parent_commit=COMMIT)
    assert plan.paths == ["site-v1/entries/example-mixup.json", "site-v1/leaderboard.csv", "site-v1/LEADERBOARD.md",
                          "README.md"]
    assert plan.parent_commit == COMMIT
    csv = next(op.path_or_fileobj for op in plan.operations if op.path_in_repo.endswith(".csv")).decode()
    assert sorted(line.split(",")[0] for line in csv.splitlines()[1:]) == [
        "erm", "erm-elsewhere", "example-mixup", "oracle-randomize-s"], "nothing on the Hub is dropped"
    with pytest.raises(HubError, match="nothing to push: the repository already has every local entry"):
        plan_push(remote, base, [SITE_SUITE], parent_commit=COMMIT)


def test_the_card_keeps_suites_that_only_the_hub_has_and_their_files_are_left_alone(
        local: Path, remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other_suite = SITE_SUITE.model_copy(update={"name": "site-other"})
    register(monkeypatch, SITE_SUITE, other_suite)
    hub = tmp_path / "hub"
    shutil.copytree(remote, hub)
    write_entry(hub, other_suite, read_entry(remote / "site-v1" / "entries" / "erm.json"))
    plan = plan_push(local, hub, [SITE_SUITE], parent_commit=COMMIT)
    assert not [path for path in plan.paths if path.startswith("site-other-v1/")]
    card = DatasetCard(plan.operations[-1].path_or_fileobj.decode())
    assert [config["config_name"] for config in card.data.configs] == ["site-v1", "site-other-v1"]
    assert "## Standings: site-other-v1" in card.text


def test_dataset_card_is_hub_metadata_and_explains_every_column_the_suite_and_submitting(local: Path) -> None:
    plan = plan_push(local, None, [SITE_SUITE])
    card = DatasetCard(plan.operations[-1].path_or_fileobj.decode())
    assert card.data.license == "mit"
    assert card.data.configs == [{"config_name": "site-v1", "data_files": "site-v1/leaderboard.csv"}]
    for column in leaderboard_frame(load_entries(local, SITE_SUITE), SITE_SUITE).columns:
        metric = column.partition("/")[2]
        assert (f"| `<task>/{metric}` |" if metric else f"| `{column}` |") in card.text, column
    assert f"| site | 1 | `{SITE_SUITE.content_hash()[:16]}` | site-lms5 | 0, 1 |" in card.text
    assert "sbbench leaderboard push --repo REPO --create-pr" in card.text
    assert "| T0 | example-mixup | " in card.text and "| stale |" in card.text


def test_pull_and_browse_offline_from_the_local_hub_cache(remote: Path, hub_cache: Path, tmp_path: Path) -> None:
    [repo] = scan_cache_dir(constants.HF_HUB_CACHE).repos
    assert (repo.repo_id, repo.repo_type, repo.nb_files) == (REPO_ID, "dataset", 6)
    assert [set(r.refs) for r in repo.revisions] == [{"main"}]

    output, error = invoke(["leaderboard", "pull", "--repo", REPO_ID])
    assert error is None, error
    assert f"{REPO_ID} at revision {COMMIT[:12]} is in the local Hub cache" in output
    assert "site-v1: 3 entries" in output

    output, error = invoke(["leaderboard", "--from-hub", REPO_ID, "--suite", "site", "--format", "csv"])
    assert error is None, error
    assert output == leaderboard_frame(load_entries(remote, SITE_SUITE), SITE_SUITE).to_csv(index=False)

    output, error = invoke(["leaderboard", "html", "--from-hub", REPO_ID, "--out", str(tmp_path / "web")])
    assert error is None, error
    assert (tmp_path / "web" / "site-v1" / "entries" / "erm-elsewhere.html").is_file()

    output, error = invoke(["leaderboard", "--from-hub", "someone/else", "--suite", "site"])
    assert isinstance(error, UserError)
    assert "someone/else is not in the local Hub cache" in str(error) and "leaderboard pull" in str(error)


def test_a_fresh_process_pulls_from_the_cache_named_by_the_environment_when_offline(
        remote: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hub-cache"
    snapshot = lay_out_hub_cache(plan_push(remote, None, [SITE_SUITE]), cache)
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf-home")}
    command = [sys.executable, "-c", "from sbbench.cli import main; main()", "leaderboard", "pull", "--repo", REPO_ID]
    pulled = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    assert str(snapshot) in pulled.stdout.replace("\n", "")
    assert f"at revision {COMMIT[:12]}" in pulled.stdout


def test_push_without_a_token_fails_before_touching_the_network(hub_cache: Path, local: Path,
                                                                 logged_out: None) -> None:
    _, error = invoke(["leaderboard", "push", "--repo", REPO_ID, "--root", str(local)])
    assert isinstance(error, UserError)
    assert str(error) == ("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN, "
                          "then push again")


def test_push_dry_run_lists_the_exact_files_and_sends_nothing(hub_cache: Path, local: Path, logged_out: None) -> None:
    output, error = invoke(["leaderboard", "push", "--repo", REPO_ID, "--root", str(local), "--dry-run"])
    assert error is None, error
    plan = plan_push(local, hub_cache, [SITE_SUITE], parent_commit=COMMIT)
    lines = output.splitlines()
    assert lines[0] == f"on top of {REPO_ID} at {COMMIT[:12]}: 1 new or changed entry"
    assert [line.split()[1] for line in lines[1:-1]] == plan.paths
    assert lines[-1] == "dry run: nothing was sent"


def test_push_offline_fails_with_a_clear_message(hub_cache: Path, local: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    _, error = invoke(["leaderboard", "push", "--repo", REPO_ID, "--root", str(local), "--create-pr"])
    assert isinstance(error, UserError)
    assert str(error) == f"cannot push to {REPO_ID}: offline mode is on (HF_HUB_OFFLINE is set); unset it and retry"


def test_push_to_an_unreachable_hub_fails_with_a_clear_message(local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a loopback port with nobody listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    plan = plan_push(local, None, [SITE_SUITE])
    with pytest.raises(HubError, match=rf"cannot push to {REPO_ID}: the Hub at {endpoint} cannot be reached"):
        push(plan, REPO_ID, create_pr=False, message="test", token="hf_not_a_real_token")


def test_repository_names_are_checked_before_anything_else() -> None:
    _, error = invoke(["leaderboard", "pull", "--repo", "not a repo"])
    assert isinstance(error, UserError) and "--repo must look like OWNER/NAME" in str(error)
