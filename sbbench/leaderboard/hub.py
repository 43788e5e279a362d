"""The leaderboard as a Hugging Face Hub dataset repository: push, pull, browse from the cache.

The repository mirrors a local leaderboard folder::

    README.md                                   dataset card (columns, suites, how to submit)
    <suite>-v<version>/entries/<method>.json    entry files, byte for byte
    <suite>-v<version>/verdicts/<digest>.json   the verdict store: maintainers' verdicts, byte for byte
    <suite>-v<version>/leaderboard.csv          tables generated from the entries and verdicts
    <suite>-v<version>/LEADERBOARD.md

A push *adds or updates* entries: it starts from the repository's current snapshot, lays the
local entries over it (same name: the local one wins; nothing is deleted), regenerates the
tables and the card from that union, and sends one commit, or one pull request with
``create_pr`` (how outside submitters propose an entry). A commit also carries the local verdict
store (a maintainer's verdicts); a pull request never does: verdicts are not proposed, they are
made by maintainers. A pull downloads the snapshot, verdicts included, into the local Hub cache
(``HF_HUB_CACHE``), where browsing reads it without a network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token, snapshot_download
from huggingface_hub.utils import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from sbbench.leaderboard.entry import LoadedEntry, Verdict
from sbbench.leaderboard.glossary import FIXED_COLUMNS, metric_description
from sbbench.leaderboard.render import (
    GUARD,
    HPARAMS,
    HPARAMS_MEANING,
    TRACK_ORDER,
    column_meanings,
    is_worst_group,
    leaderboard_frame,
    superseded_note,
    to_markdown,
)
from sbbench.leaderboard.store import load_entries, read_verdict, suites_with_entries, verdict_dir
from sbbench.suite import SUITES, Suite

REPO_TYPE = "dataset"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failure classes of whichever HTTP client this huggingface_hub version uses."""
    found: list[type[BaseException]] = [OSError]  # requests' errors derive from OSError
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


_NETWORK_ERRORS = _transport_errors()
"""What a Hub call raises when the Hub cannot be reached or refuses (HTTP errors are OSErrors too)."""


class HubError(RuntimeError):
    """A Hub operation failed; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class PushPlan:
    """Exactly what a push sends: the files, the commit it builds on and a summary."""

    operations: list[CommitOperationAdd]
    parent_commit: str | None
    """The repository commit the tables were merged with (``None``: a new repository)."""
    changed_entries: list[str]
    """``<suite>/entries/<name>.json`` paths that are new or differ from the repository's."""
    suites: list[str]
    changed_verdicts: list[str] = field(default_factory=list)
    """``<suite>/verdicts/<digest>.json`` paths that are new or differ from the repository's (commits only)."""

    @property
    def paths(self) -> list[str]:
        """The repository paths written, in order."""
        return [operation.path_in_repo for operation in self.operations]


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` itself when it looks like ``OWNER/NAME``, else a :class:`HubError`."""
    if not _REPO_ID.fullmatch(repo_id):
        raise HubError(f"--repo must look like OWNER/NAME (a Hub dataset repository), got {repo_id!r}")
    return repo_id


def plan_push(root: Path, base: Path | None, suites: Sequence[Suite] | None = None,
              parent_commit: str | None = None, *, verdicts: bool = True) -> PushPlan:
    """The operations that publish the entries under ``root`` on top of the snapshot ``base``.

    ``base`` is a local copy of the repository (``None`` for a new one); ``suites`` default to
    every known suite with entries under ``root``. With ``verdicts`` (a maintainer's commit) the
    local verdict store is sent too; without (a pull request) it is not, and statuses come from
    the repository's verdicts alone. The card also lists the suites that only the repository has.
    Raises :class:`HubError` when no entry or verdict is new or changed, and
    :class:`~sbbench.leaderboard.store.EntryError` on an invalid entry.
    """
    chosen = list(suites) if suites is not None else suites_with_entries(root)
    operations: list[CommitOperationAdd] = []
    changed: list[str] = []
    changed_verdicts: list[str] = []
    boards: list[tuple[Suite, list[LoadedEntry]]] = []
    for suite in chosen:
        local = load_entries(root, suite)
        remote = load_entries(base, suite) if base is not None else []
        remote_bytes = {item.path.name: item.path.read_bytes() for item in remote}
        for item in local:
            data = item.path.read_bytes()
            if remote_bytes.get(item.path.name) != data:
                path = f"{suite.label}/entries/{item.path.name}"
                changed.append(path)
                operations.append(CommitOperationAdd(path_in_repo=path, path_or_fileobj=data))
        if verdicts:
            sent = _new_verdicts(root, base, suite)
            changed_verdicts += list(sent)
            operations += [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in sent.items()]
        merged = {item.path.name: item for item in remote} | {item.path.name: item for item in local}
        board = [_with_verdict(merged[name], suite, root if verdicts else None, base) for name in sorted(merged)]
        if board:
            boards.append((suite, board))
            frame = leaderboard_frame(board, suite)
            operations.append(CommitOperationAdd(path_in_repo=f"{suite.label}/leaderboard.csv",
                                                 path_or_fileobj=frame.to_csv(index=False).encode()))
            operations.append(CommitOperationAdd(path_in_repo=f"{suite.label}/LEADERBOARD.md",
                                                 path_or_fileobj=to_markdown(frame, suite).encode()))
    if not changed and not changed_verdicts:
        where = "the repository already has every local entry" if base is not None else "no entries"
        raise HubError(f"nothing to push: {where} under {root} for suites "
                       f"{', '.join(s.label for s in chosen) or '(none with entries)'}")
    for suite in suites_with_entries(base) if base is not None else []:
        if suite not in chosen:  # suites only on the Hub stay in the card as they are
            boards.append((suite, load_entries(base, suite)))
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=dataset_card(boards).encode()))
    return PushPlan(operations=operations, parent_commit=parent_commit, changed_entries=changed,
                    suites=[suite.label for suite, _ in boards], changed_verdicts=changed_verdicts)


def _new_verdicts(root: Path, base: Path | None, suite: Suite) -> dict[str, bytes]:
    """Repository path -> bytes of each valid local verdict file that the repository lacks or holds otherwise."""
    sent = {}
    for path in sorted(verdict_dir(root, suite).glob("*.json")):
        data = path.read_bytes()
        try:
            if Verdict.model_validate_json(data).claims != path.stem:
                continue
        except ValueError:
            continue
        remote = verdict_dir(base, suite) / path.name if base is not None else None
        if remote is None or not remote.is_file() or remote.read_bytes() != data:
            sent[f"{suite.label}/verdicts/{path.name}"] = data
    return sent


def _with_verdict(item: LoadedEntry, suite: Suite, local: Path | None, base: Path | None) -> LoadedEntry:
    """``item`` with the verdict on its claims from the local store (when sent), else from the repository's."""
    verdict = read_verdict(local, suite, item.entry) if local is not None else None
    if verdict is None and base is not None:
        verdict = read_verdict(base, suite, item.entry)
    return dataclasses.replace(item, verdict=verdict)


def dataset_card(boards: Sequence[tuple[Suite, Sequence[LoadedEntry]]]) -> str:
    """The repository's README: Hub metadata, suites (superseded ones marked), standings, columns, how to submit."""
    return "\n".join([*_card_metadata(boards), *_card_suites(boards), *_card_standings(boards),
                      *_card_columns(boards), *_card_files_and_submitting()])


def _card_metadata(boards: Sequence[tuple[Suite, Sequence[LoadedEntry]]]) -> list[str]:
    """The YAML header (one dataset config per suite) and the card's opening paragraph."""
    lines = ["---", "pretty_name: sbbench leaderboard", "license: mit",
             "tags:", "- simplicity-bias", "- benchmark", "- leaderboard", "configs:"]
    for suite, _ in boards:
        lines += [f"- config_name: {suite.label}", f"  data_files: {suite.label}/leaderboard.csv"]
    return [*lines, "---", "", "# sbbench leaderboard", "",
            "The leaderboard of sbbench, a benchmark for simplicity bias (Shah et al., \"The Pitfalls of Simplicity "
            "Bias in Neural Networks\", [NeurIPS 2020](https://arxiv.org/abs/2006.07710)): how much a trained "
            "network relies on the simple feature S and ignores the equally predictive complex features S^c. "
            "Generated by `sbbench leaderboard push` from the entry files; do not edit by hand.", ""]


def _card_suites(boards: Sequence[tuple[Suite, Sequence[LoadedEntry]]]) -> list[str]:
    """The suites table (with each suite's score rule and whether it is superseded) and what the statuses mean."""
    lines = ["## Suites", "", "| suite | version | hash | tasks | seeds | score | entries | current |",
             "|---|---|---|---|---|---|---|---|"]
    for suite, entries in boards:
        current = f"superseded by {suite.superseded_by}" if suite.superseded_by else "current"
        lines.append(f"| {suite.name} | {suite.version} | `{suite.content_hash()[:16]}` | "
                     f"{', '.join(t.name for t in suite.tasks)} | {', '.join(map(str, suite.seeds))} | "
                     f"{_score_rule(suite)} | {len(entries)} | {current} |")
    lines.append("")
    lines += [f"**Superseded:** {superseded_note(suite)}." for suite, _ in boards if suite.superseded_by]
    return [*lines, "", "An entry is **stale** when its suite hash differs from the current definition of its suite "
            "version: it stays listed, after the current ones, until it is re-scored. An entry is **verified** "
            "or **rejected** only when the verdict store holds a maintainer's verdict on its exact current "
            "content (`<suite>-v<version>/verdicts/<sha256 of the entry>.json`); a verdict written inside an "
            "entry file is ignored, and an entry changed after its verification is **unverified** again.", ""]


def _score_rule(suite: Suite) -> str:
    """The suites table's score cell: the mean rule's metric, or the worst-group rule in a few words."""
    if is_worst_group(suite):
        return f"worst-group: `{suite.primary_metric}` / the oracle's, mean over tasks, with the accuracy guard"
    return f"`{suite.primary_metric}` (mean over tasks)"


def _card_standings(boards: Sequence[tuple[Suite, Sequence[LoadedEntry]]]) -> list[str]:
    """One standings table per suite, in table order; worst-group suites also show the guard's remarks; last,
    how the hyperparameters were chosen."""
    lines = []
    for suite, entries in boards:
        frame = leaderboard_frame(list(entries), suite)
        mark = f" (superseded by {suite.superseded_by})" if suite.superseded_by else ""
        guarded = is_worst_group(suite)
        lines += [f"## Standings: {suite.label}{mark}", "",
                  "| track | method | score | status |" + (" guard |" if guarded else "") + f" {HPARAMS} |",
                  "|---|---|---|---|" + ("---|" if guarded else "") + "---|"]
        lines += [f"| {row['track']} | {row['method']} | {row['score']:.3f} | {row['status']} |"
                  + (f" {row[GUARD]} |" if guarded else "") + f" {row[HPARAMS]} |"
                  for row in frame.to_dict(orient="records")]
        lines.append("")
    return lines


def _card_columns(boards: Sequence[tuple[Suite, Sequence[LoadedEntry]]]) -> list[str]:
    """What every column of the suites' ``leaderboard.csv`` means."""
    lines = ["## Columns of `leaderboard.csv`", "", "| column | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in FIXED_COLUMNS.items()]
    lines.append(f"| `{HPARAMS}` | {HPARAMS_MEANING} |")
    for suite, _ in boards:
        lines += [f"| `{name}` ({suite.label}) | {meaning} |" for name, meaning in column_meanings(suite).items()]
    metrics = sorted({metric for suite, _ in boards for metric in suite.table_metrics})
    lines += [f"| `<task>/{metric}` | {metric_description(metric)}, mean over seeds |" for metric in metrics]
    return [*lines, "", f"Tracks, in table order: {', '.join(TRACK_ORDER)}.", ""]


def _card_files_and_submitting() -> list[str]:
    """Where the files are, how to fetch them, and how to propose an entry."""
    current = SUITES["synthetic"].label
    return ["## Files", "",
            "- `<suite>-v<version>/entries/<method>.json`: one entry per method: provenance, hyperparameters, "
            "per-task summaries (mean, std, 95% CI, n) and every run's metrics and per-coordinate profiles "
            "(format: `docs/entry-format.md` in the sbbench repository).",
            "- `<suite>-v<version>/verdicts/<sha256>.json`: the verdicts of `sbbench verify`, one per verified entry "
            "content, written by maintainers only (format: `docs/verification.md`).",
            "- `<suite>-v<version>/leaderboard.csv` and `LEADERBOARD.md`: the tables, generated from the entries "
            "and the verdicts.",
            "", "Fetch as data: `huggingface_hub.snapshot_download(REPO, repo_type=\"dataset\")`, or "
            "`sbbench leaderboard pull --repo REPO` then `sbbench leaderboard --from-hub REPO`.", "",
            "## How to submit", "",
            "1. Write a method (see `docs/writing-a-method.md`) and score it: `sbbench score submissions/<name> "
            f"--suite synthetic --root leaderboard` writes `leaderboard/{current}/entries/<name>.json`.",
            "2. Log in (`hf auth login`, or set `HF_TOKEN`) and propose it: "
            "`sbbench leaderboard push --repo REPO --create-pr`. This opens a pull request with your entry and "
            "the regenerated tables; the maintainers verify it by re-training and merge it. A pull request never "
            "carries verdicts (`--create-pr` leaves the verdict store out), and one that touches `verdicts/` is "
            "not merged.", ""]


def require_token() -> str:
    """The Hub token of this machine (``HF_TOKEN`` or ``hf auth login``), checked before any network call."""
    token = get_token()
    if not token:
        raise HubError("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN, then push again")
    return token


def push(plan: PushPlan, repo_id: str, *, create_pr: bool, message: str, token: str) -> str:
    """Send ``plan`` as one commit (or pull request) with ``token``; returns the commit's or the PR's URL."""
    check_repo_id(repo_id)
    api = HfApi(token=token)
    try:
        if plan.parent_commit is None and not create_pr:
            api.create_repo(repo_id, repo_type=REPO_TYPE, exist_ok=True)
        info = api.create_commit(repo_id, plan.operations, commit_message=message, repo_type=REPO_TYPE,
                                 create_pr=create_pr, parent_commit=plan.parent_commit)
    except _NETWORK_ERRORS as error:
        raise _explain(error, f"push to {repo_id}") from error
    return str(info.pr_url if create_pr and info.pr_url else info.commit_url)


def hub_base(repo_id: str) -> tuple[Path | None, str | None]:
    """The repository's current snapshot and its commit, or ``(None, None)`` when it does not exist yet."""
    check_repo_id(repo_id)
    try:
        folder = Path(snapshot_download(repo_id, repo_type=REPO_TYPE))
    except RepositoryNotFoundError:
        return None, None
    except _NETWORK_ERRORS as error:
        raise _explain(error, f"read {repo_id}") from error
    return folder, folder.name


def pull(repo_id: str, *, revision: str | None = None) -> Path:
    """Download the repository into the local Hub cache; returns the snapshot folder."""
    check_repo_id(repo_id)
    try:
        return Path(snapshot_download(repo_id, repo_type=REPO_TYPE, revision=revision))
    except _NETWORK_ERRORS as error:
        raise _explain(error, f"pull {repo_id}") from error


def cached_snapshot(repo_id: str, *, revision: str | None = None) -> Path:
    """The snapshot of ``repo_id`` already in the local Hub cache (no network)."""
    check_repo_id(repo_id)
    try:
        return Path(snapshot_download(repo_id, repo_type=REPO_TYPE, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        raise HubError(f"{repo_id} is not in the local Hub cache ({constants.HF_HUB_CACHE}); "
                       f"run `sbbench leaderboard pull --repo {repo_id}` first") from None


def file_digest(operation: CommitOperationAdd) -> str:
    """sha256 of an operation's content (its bytes as sent)."""
    content = operation.path_or_fileobj
    data = content if isinstance(content, bytes) else Path(content).read_bytes()
    return hashlib.sha256(data).hexdigest()


def _explain(error: BaseException, action: str) -> HubError:
    """One clear line for a failed Hub call."""
    if isinstance(error, OfflineModeIsEnabled):
        return HubError(f"cannot {action}: offline mode is on (HF_HUB_OFFLINE is set); unset it and retry")
    if isinstance(error, LocalEntryNotFoundError):
        return HubError(f"cannot {action}: the Hub cannot be reached and nothing is cached for it; "
                        "check the network (and HF_HUB_OFFLINE) and retry")
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        reasons = {401: "the Hub did not accept the token (401): log in again with `hf auth login`",
                   403: "the token may not write there (403): use --create-pr to propose the change instead",
                   404: "no such repository, or no access to it (404)"}
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        return HubError(f"cannot {action}: {reasons.get(status, first_line)}")
    if not isinstance(error, OSError) or isinstance(error, ConnectionError):
        return HubError(f"cannot {action}: the Hub at {constants.ENDPOINT} cannot be reached "
                        f"({type(error).__name__}: {error}); check the network and retry")
    return HubError(f"cannot {action}: {type(error).__name__}: {error}")
