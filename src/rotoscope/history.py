"""What changed between two Git revisions of a studio, and which revisions changed a manifest.

Everything here reads Git only (manifests, params.yaml and filter cards are text in Git); no blob
is touched, so a diff of two versions of a 2000-frame render costs two small JSON reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML

from rotoscope.errors import RotoscopeError

Status = Literal["added", "removed", "changed", "unchanged"]
_WATCHED_PARAMS = ("videos", "filters", "renders", "split", "stylize", "reassemble", "train")


@dataclass(frozen=True)
class FrameChanges:
    changed: list[tuple[int, int]]  # inclusive index ranges whose frames differ (md5 or timestamp)
    added: int  # frames only the newer revision has
    removed: int  # frames only the older revision has
    same: int

    @property
    def changed_count(self) -> int:
        return sum(last - first + 1 for first, last in self.changed)


@dataclass(frozen=True)
class ManifestChange:
    path: str
    status: Status
    frames_a: int
    frames_b: int
    frames: FrameChanges
    settings: dict[str, tuple[Any, Any]]  # dotted key -> (before, after): filter, render, extract...
    filter_card: dict[str, Any] | None = None  # the newer revision's card, when the filter changed


@dataclass
class RevisionDiff:
    rev_a: str
    rev_b: str
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    manifests: list[ManifestChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        lines = [f"### rotoscope diff `{self.rev_a}`..`{self.rev_b}`", ""]
        if self.params:
            lines += ["**Parameters**", "", "| key | before | after |", "|---|---|---|"]
            lines += [f"| `{key}` | {_md(a)} | {_md(b)} |" for key, (a, b) in self.params.items()]
            lines.append("")
        for change in self.manifests:
            if change.status == "unchanged":
                continue
            lines += [f"**`{change.path}`**: {describe(change)}", ""]
            for key, (a, b) in change.settings.items():
                lines.append(f"- `{key}`: {_md(a)} → {_md(b)}")
            if change.filter_card:
                lines.append(f"- filter card: {card_line(change.filter_card)}")
            if change.frames.changed:
                lines.append(f"- changed frames: {ranges_text(change.frames.changed)}")
            lines.append("")
        if len(lines) == 2:
            lines.append("No manifest or parameter changed.")
        return "\n".join(lines).rstrip() + "\n"

    def lines(self) -> list[str]:
        """The plain text report for a terminal."""
        out = [f"rotoscope diff {self.rev_a}..{self.rev_b}"]
        out += [f"  param {key}: {_plain(a)} -> {_plain(b)}" for key, (a, b) in self.params.items()]
        for change in self.manifests:
            if change.status != "unchanged":
                out += [f"{change.path}: {describe(change)}", *change_lines(change, "  ")]
        if len(out) == 1:
            out.append("no manifest or parameter changed")
        return out


def describe(change: ManifestChange) -> str:
    """One phrase: added/removed, or how many frames changed, were added and removed."""
    if change.status in ("added", "removed"):
        return f"{change.status} ({max(change.frames_a, change.frames_b)} frames)"
    frames = change.frames
    parts = [f"{frames.changed_count} of {change.frames_b} frames changed"]
    parts += [f"{frames.added} added"] if frames.added else []
    parts += [f"{frames.removed} removed"] if frames.removed else []
    return ", ".join(parts)


def change_lines(change: ManifestChange, indent: str) -> list[str]:
    """The details under a manifest's one-line description: settings, filter card, frame ranges."""
    lines = [f"{indent}{key}: {_plain(a)} -> {_plain(b)}" for key, (a, b) in change.settings.items()]
    if change.filter_card:
        lines.append(f"{indent}filter card: {card_line(change.filter_card)}")
    if change.frames.changed and change.status == "changed":
        lines.append(f"{indent}changed frames: {ranges_text(change.frames.changed)}")
    return lines


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def card_line(card: dict[str, Any]) -> str:
    about = card.get("provenance") or {}
    work = ", ".join(str(v) for v in (about.get("artist"), about.get("title"), about.get("year")) if v)
    return f"{card.get('name')} ({card.get('kind')}){': ' + work if work else ''}"


# -- comparing -------------------------------------------------------------------------------------


def compare_frames(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> FrameChanges:
    """Frames side by side by index: which ranges differ, and how many were added or removed."""
    shared = min(len(before), len(after))
    differs = [
        (before[i]["md5"], before[i]["pts"]) != (after[i]["md5"], after[i]["pts"]) for i in range(shared)
    ]
    ranges: list[tuple[int, int]] = []
    for index, different in enumerate(differs):
        if not different:
            continue
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
    return FrameChanges(
        changed=ranges,
        added=max(0, len(after) - len(before)),
        removed=max(0, len(before) - len(after)),
        same=differs.count(False),
    )


def flat_changes(before: Any, after: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two nested mappings."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: dict[str, tuple[Any, Any]] = {}
        for key in sorted(set(before) | set(after), key=str):
            found.update(flat_changes(before.get(key), after.get(key), f"{prefix}{key}."))
        return found
    return {} if before == after else {prefix.rstrip("."): (before, after)}


def compare_manifests(
    path: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> ManifestChange:
    status: Status = "added" if before is None else "removed" if after is None else "changed"
    old_frames = (before or {}).get("frames", [])
    new_frames = (after or {}).get("frames", [])
    frames = compare_frames(old_frames, new_frames)
    settings: dict[str, tuple[Any, Any]] = {}
    if before is not None and after is not None:
        header = ("lineage", "extract", "width", "height")
        settings = flat_changes(
            {key: before.get(key) for key in header} | {"video.md5": before["video"]["md5"]},
            {key: after.get(key) for key in header} | {"video.md5": after["video"]["md5"]},
        )
        settings.pop("lineage.parent_md5", None)  # follows from the source's own change
        if not settings and not frames.changed and not frames.added and not frames.removed:
            status = "unchanged"
    return ManifestChange(path, status, len(old_frames), len(new_frames), frames, settings)


# -- reading revisions -----------------------------------------------------------------------------


class Revisions:
    """A studio's Git history, read through GitPython. Paths are the studio's own, even when the
    studio is a folder inside a larger repository."""

    def __init__(self, root: Path) -> None:
        import git

        self.root = root
        try:
            self.repo = git.Repo(root, search_parent_directories=True)
        except git.exc.InvalidGitRepositoryError:
            raise RotoscopeError(root, "not inside a Git repository") from None
        top = Path(self.repo.working_tree_dir or root).resolve()
        inside = root.resolve().relative_to(top).as_posix()
        self.prefix = "" if inside == "." else inside + "/"

    def resolve(self, rev: str) -> str:
        try:
            return self.repo.git.rev_parse("--short", "--verify", f"{rev}^{{commit}}")
        except Exception:
            raise RotoscopeError(self.root, f"unknown revision {rev!r}") from None

    def text(self, rev: str, path: str) -> str | None:
        try:
            return self.repo.git.show(f"{rev}:{self.prefix}{path}")
        except Exception:  # not in that revision
            return None

    def json(self, rev: str, path: str) -> dict[str, Any] | None:
        text = self.text(rev, path)
        if text is None:
            return None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise RotoscopeError(f"{rev}:{path}", f"not valid JSON ({error})") from None
        if not isinstance(document, dict):
            raise RotoscopeError(f"{rev}:{path}", "not a JSON object")
        return document

    def manifest_paths(self, rev: str, under: str) -> set[str]:
        listed = self.repo.git.ls_tree("-r", "--name-only", rev, "--", self.prefix + (under or "manifests"))
        inside = (p[len(self.prefix) :] for p in listed.splitlines())
        return {p for p in inside if p.startswith("manifests/") and p.endswith(".json")}

    def commits_touching(self, path: str) -> list[tuple[str, str, str]]:
        """(short sha, date, subject) of each commit that changed ``path``, newest first."""
        out = self.repo.git.log("--format=%h%x09%ad%x09%s", "--date=short", "--", self.prefix + path)
        return [tuple(line.split("\t", 2)) for line in out.splitlines() if line]  # type: ignore[misc]


def studio_path(root: Path, path: Path) -> str:
    """``path`` (absolute, or relative to the current folder) as the studio names it ("" for its root)."""
    full = path.resolve()
    if not full.is_relative_to(root.resolve()):
        raise RotoscopeError(path, f"outside the studio ({root})")
    relative = full.relative_to(root.resolve()).as_posix()
    return "" if relative == "." else relative


def diff_revisions(root: Path, rev_a: str, rev_b: str, under: str = "") -> RevisionDiff:
    """Parameters, filters and frames that differ between two revisions (optionally under a path)."""
    history = Revisions(root)
    a, b = history.resolve(rev_a), history.resolve(rev_b)
    result = RevisionDiff(a, b, params=_params_changes(history, a, b))
    paths = history.manifest_paths(a, under) | history.manifest_paths(b, under)
    if under and not paths:
        raise RotoscopeError(under, f"no manifest under this path at {rev_a} or {rev_b}")
    for path in sorted(paths):
        after = history.json(b, path)
        change = compare_manifests(path, history.json(a, path), after)
        if change.status == "changed" and any(key.startswith("lineage.filter") for key in change.settings):
            name = ((after or {}).get("lineage") or {}).get("filter", {}).get("name")
            card = history.json(b, f"filters/{name}/filter.json") if name else None
            change = replace(change, filter_card=card)
        result.manifests.append(change)
    return result


def _params_changes(history: Revisions, a: str, b: str) -> dict[str, tuple[Any, Any]]:
    return flat_changes(_watched_params(history, a), _watched_params(history, b))


def _watched_params(history: Revisions, rev: str) -> dict[str, Any]:
    try:
        document = YAML(typ="safe").load(history.text(rev, "params.yaml") or "{}") or {}
    except Exception as error:  # ruamel raises many types, all meaning "not valid YAML"
        raise RotoscopeError(f"{rev}:params.yaml", f"invalid YAML ({error})") from None
    if not isinstance(document, dict):
        raise RotoscopeError(f"{rev}:params.yaml", "must be a mapping of sections")
    return {key: document.get(key) for key in _WATCHED_PARAMS}


@dataclass(frozen=True)
class LogEntry:
    commit: str
    date: str
    subject: str
    change: ManifestChange


def manifest_log(root: Path, path: Path) -> list[LogEntry]:
    """Each revision that changed a manifest, newest first, with what it changed."""
    history = Revisions(root)
    relative = studio_path(root, path)
    entries = []
    for commit, date, subject in history.commits_touching(relative):
        before = history.json(f"{commit}^", relative)
        after = history.json(commit, relative)
        entries.append(LogEntry(commit, date, subject, compare_manifests(relative, before, after)))
    if not entries:
        raise RotoscopeError(path, "no commit has this manifest (commit it first)")
    return entries


def _plain(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value) if isinstance(value, dict | list) else str(value)


def _md(value: Any) -> str:
    return f"`{_plain(value)}`"
