"""What changed between two Git revisions of a studio, and which revisions changed a manifest.

Everything here reads Git only (manifests, params.yaml and filter cards are text in Git); no blob
is touched, so a diff of two versions of a 2000-frame render costs two small JSON reads.

The newer revision is often a stranger's fork under review, so everything read from a revision
is hostile: each manifest and card is validated before a field of it is used (one that fails is
reported as refused, never trusted), YAML is read under limits, and text is escaped for the
medium it is shown in. What no validation can make safe (a changed pipeline command, a remote
moved elsewhere, a path or symlink that leaves the studio) is named in ``warnings``, first.
"""

from __future__ import annotations

import configparser
import json
import posixpath
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rotoscope import manifest as manifests
from rotoscope import params as studio_params
from rotoscope import schemas, yamlsafe
from rotoscope.errors import CardError, ManifestError, ParamsError, RotoscopeError
from rotoscope.layout import NAME, SCRATCH
from rotoscope.manifest import Manifest
from rotoscope.text import code_span, markdown, terminal

Status = Literal["added", "removed", "changed", "unchanged", "invalid"]
_WATCHED_PARAMS = ("videos", "filters", "renders", "split", "stylize", "reassemble", "train")
_GENERATED = ("frames", "renders", "quality", SCRATCH)  # folders rotoscope writes and deletes in
MAX_SHOWN = 300  # characters of one value in a report: a hostile value must not flood a review
MAX_FILE_WARNINGS = 50  # per kind of path warning; past that, a count
MAX_DVC_FILES = 1000  # .dvc files read for paths: a studio has one per video and style picture
WARNING_NOTE = (
    "a revision can make `dvc repro` run its commands, and `dvc push` or `dvc pull` reach elsewhere."
)


@dataclass(frozen=True)
class FrameChanges:
    changed: list[tuple[int, int]]  # inclusive index ranges whose frames differ (md5 or timestamp)
    added: int  # frames only the newer revision has
    removed: int  # frames only the older revision has
    same: int

    @property
    def changed_count(self) -> int:
        return sum(last - first + 1 for first, last in self.changed)


NO_FRAMES = FrameChanges(changed=[], added=0, removed=0, same=0)


@dataclass(frozen=True)
class ManifestChange:
    path: str
    status: Status
    frames_a: int
    frames_b: int
    frames: FrameChanges
    settings: dict[str, tuple[Any, Any]]  # dotted key -> (before, after): filter, render, extract...
    # the newer revision's card, validated against the filter schema, when the filter changed
    filter_card: dict[str, Any] | None = None
    problem: str | None = None  # status "invalid": why a revision's manifest was refused


@dataclass
class RevisionDiff:
    rev_a: str
    rev_b: str
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    manifests: list[ManifestChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what a reviewer must check by hand, first

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        return {
            "rev_a": body.pop("rev_a"),
            "rev_b": body.pop("rev_b"),
            "warnings": body.pop("warnings"),
            **body,
        }

    def to_json(self) -> str:
        # default=str: a hostile params.yaml may hold YAML timestamps or sets, which JSON has not
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"

    def to_markdown(self) -> str:
        lines = [f"### rotoscope diff {_code(self.rev_a)}..{_code(self.rev_b)}", ""]
        if self.warnings:
            lines += ["> [!WARNING]", f"> **Check these by hand before running DVC:** {WARNING_NOTE}"]
            lines += [f"> - {markdown(warning)}" for warning in self.warnings]
            lines.append("")
        if self.params:
            lines += ["**Parameters**", "", "| key | before | after |", "|---|---|---|"]
            lines += [f"| {_code(key)} | {_code(a)} | {_code(b)} |" for key, (a, b) in self.params.items()]
            lines.append("")
        for change in self.manifests:
            if change.status == "unchanged":
                continue
            lines += [f"**{_code(change.path)}**: {_markdown_describe(change)}", ""]
            lines += [f"- {_code(key)}: {_code(a)} → {_code(b)}" for key, (a, b) in change.settings.items()]
            if change.filter_card:
                lines.append(f"- filter card: {markdown(card_line(change.filter_card))}")
            if change.frames.changed:
                lines.append(f"- changed frames: {ranges_text(change.frames.changed)}")
            lines.append("")
        if len(lines) == 2:
            lines.append("No manifest or parameter changed.")
        return "\n".join(lines).rstrip() + "\n"

    def lines(self) -> list[str]:
        """The plain text report for a terminal (no control characters: see text.terminal)."""
        out = [f"rotoscope diff {self.rev_a}..{self.rev_b}"]
        out += [f"WARNING: {warning}" for warning in self.warnings]
        out += [f"  param {key}: {value_text(a)} -> {value_text(b)}" for key, (a, b) in self.params.items()]
        for change in self.manifests:
            if change.status != "unchanged":
                out += [f"{change.path}: {describe(change)}", *change_lines(change, "  ")]
        if len(out) == 1 + len(self.warnings):
            out.append("no manifest or parameter changed")
        return [terminal(line) for line in out]


def describe(change: ManifestChange) -> str:
    """One phrase: added/removed, refused, or how many frames changed, were added and removed."""
    if change.status == "invalid":
        return f"refused: {change.problem}"
    if change.status in ("added", "removed"):
        return f"{change.status} ({max(change.frames_a, change.frames_b)} frames)"
    frames = change.frames
    parts = [f"{frames.changed_count} of {change.frames_b} frames changed"]
    parts += [f"{frames.added} added"] if frames.added else []
    parts += [f"{frames.removed} removed"] if frames.removed else []
    return ", ".join(parts)


def change_lines(change: ManifestChange, indent: str) -> list[str]:
    """The details under a manifest's one-line description: settings, filter card, frame ranges."""
    lines = [f"{indent}{key}: {value_text(a)} -> {value_text(b)}" for key, (a, b) in change.settings.items()]
    if change.filter_card:
        lines.append(f"{indent}filter card: {card_line(change.filter_card)}")
    if change.frames.changed and change.status == "changed":
        lines.append(f"{indent}changed frames: {ranges_text(change.frames.changed)}")
    return [terminal(line) for line in lines]


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def card_line(card: dict[str, Any]) -> str:
    """A card's name, kind and artwork as plain text (each medium escapes it: a card is anyone's)."""
    about = card.get("provenance") or {}
    work = ", ".join(str(v) for v in (about.get("artist"), about.get("title"), about.get("year")) if v)
    return terminal(f"{card.get('name')} ({card.get('kind')}){': ' + work if work else ''}")


def value_text(value: Any) -> str:
    """A parameter or setting as one printable line, cut at MAX_SHOWN characters."""
    shown = "(none)" if value is None else _json(value) if isinstance(value, dict | list) else str(value)
    return terminal(_clip(shown))


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # keys JSON cannot name (YAML allows a list as a key)
        return repr(value)


def _code(value: Any) -> str:
    """A Markdown code span of ``value``: plain backticks when it has none (how a pull request
    reads best), text.code_span's longer fence, which no backtick can close, when it has."""
    shown = value_text(value)
    if not shown or "`" in shown or shown != shown.strip():
        return code_span(shown)
    cell = shown.replace("|", "\\|")  # a pipe would split a table cell, even inside a code span
    return f"`{cell}`"


def _markdown_describe(change: ManifestChange) -> str:
    if change.status == "invalid":  # the problem quotes the hostile value itself
        return f"refused: {markdown(change.problem)}"
    return describe(change)  # numbers and fixed words only


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
    """Two manifest documents (validated by the caller when they come from a revision)."""
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


def refused_change(path: str, error: RotoscopeError) -> ManifestChange:
    """A manifest that failed validation at either revision: named, never read further."""
    return ManifestChange(path, "invalid", 0, 0, NO_FRAMES, {}, problem=str(error))


# -- reading revisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeEntry:
    """One file of a revision, as ``git ls-tree -r`` lists it."""

    mode: str  # 100644, 100755, 120000 (a symlink: its blob is the target), 160000 (a submodule)
    sha: str
    path: str  # the studio's own path

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"


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

    def text(self, rev: str, path: str, limit: int = schemas.MAX_JSON_BYTES) -> str | None:
        """The file's text at ``rev`` (None where it has none); past ``limit`` bytes, refused
        before it is read: a fork can commit a file of any size."""
        try:  # rev-parse takes the path as an argument: a name with a newline stays one name
            sha = self.repo.git.rev_parse("--verify", "--quiet", f"{rev}:{self.prefix}{path}")
        except Exception:  # not in that revision (or no such revision: a root commit's parent)
            return None
        return self._blob_text(sha, f"{rev}:{path}", limit)

    def entry_text(self, rev: str, entry: TreeEntry, limit: int = 1 << 20) -> str:
        return self._blob_text(entry.sha, f"{rev}:{entry.path}", limit) or ""

    def _blob_text(self, sha: str, where: str, limit: int) -> str | None:
        binsha = bytes.fromhex(sha)
        info = self.repo.odb.info(binsha)  # the persistent `git cat-file --batch-check`
        if info.type != b"blob":
            return None  # a folder of that name
        if info.size > limit:
            raise RotoscopeError(
                where, f"refused: {info.size:,} bytes, over the {limit:,} a studio file may have"
            )
        try:
            return self.repo.odb.stream(binsha).read().decode("utf-8")
        except UnicodeDecodeError:
            raise RotoscopeError(where, "not a text file (invalid UTF-8)") from None

    def json(
        self,
        rev: str,
        path: str,
        error_type: type[RotoscopeError] = RotoscopeError,
        limit: int = schemas.MAX_JSON_BYTES,
    ) -> dict[str, Any] | None:
        text = self.text(rev, path, limit)
        if text is None:
            return None
        document = schemas.parse_json(text, f"{rev}:{path}", error_type)
        if not isinstance(document, dict):
            raise error_type(f"{rev}:{path}", "not a JSON object")
        return document

    def manifest_document(self, rev: str, path: str) -> dict[str, Any] | None:
        """A manifest's JSON at ``rev``, validated (manifest.checked) before any field is read."""
        document = self.json(rev, path, ManifestError)
        if document is not None:
            manifests.checked(document, f"{rev}:{path}")
        return document

    def manifest(self, rev: str, path: str) -> Manifest | None:
        document = self.json(rev, path, ManifestError)
        return None if document is None else manifests.checked(document, f"{rev}:{path}")

    def files(self, rev: str, under: str = "") -> list[TreeEntry]:
        """Every file of the studio at ``rev`` (or under one of its folders), names unquoted."""
        where = self.prefix + under
        paths = ["--", where] if where else []  # git refuses an empty pathspec
        raw = self.repo.git.ls_tree("-r", "-z", rev, *paths, stdout_as_string=False)
        entries = []
        for record in raw.split(b"\0"):
            if not record:
                continue
            head, _, name = record.partition(b"\t")
            mode, _kind, sha = head.decode("ascii").split()
            path = name.decode("utf-8", "replace")  # a name that is not UTF-8 reads as missing
            if path.startswith(self.prefix):
                entries.append(TreeEntry(mode, sha, path[len(self.prefix) :]))
        return entries

    def manifest_paths(self, rev: str, under: str) -> set[str]:
        found = self.files(rev, under or "manifests")
        return {e.path for e in found if e.path.startswith("manifests/") and e.path.endswith(".json")}

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
    """Parameters, filters and frames that differ between two revisions (optionally under a path),
    and warnings on what the newer revision could do that no validation prevents."""
    history = Revisions(root)
    a, b = history.resolve(rev_a), history.resolve(rev_b)
    params, params_warnings = params_changes(history, a, b)
    result = RevisionDiff(a, b, params=params, warnings=fork_warnings(history, a, b))
    result.warnings += params_warnings
    paths = history.manifest_paths(a, under) | history.manifest_paths(b, under)
    if under and not paths:
        raise RotoscopeError(under, f"no manifest under this path at {rev_a} or {rev_b}")
    for path in sorted(paths):
        change, warning = manifest_change(history, a, b, path)
        result.manifests.append(change)
        result.warnings += [warning] if warning else []
    return result


def manifest_change(history: Revisions, a: str, b: str, path: str) -> tuple[ManifestChange, str | None]:
    """One manifest compared across two revisions, and a warning when its new filter card is refused."""
    try:
        before, after = history.manifest_document(a, path), history.manifest_document(b, path)
    except RotoscopeError as error:
        return refused_change(path, error), None
    change = compare_manifests(path, before, after)
    if after is None or change.status != "changed":
        return change, None
    if not any(key.startswith("lineage.filter") for key in change.settings):
        return change, None
    name = ((after.get("lineage") or {}).get("filter") or {}).get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):  # the manifest schema checked it; be sure
        return change, None
    card_path = f"filters/{name}/filter.json"
    try:
        card = history.json(b, card_path, CardError, limit=1 << 20)  # a card is a few KiB
        if card is not None:
            schemas.check(card, "filter", f"{b}:{card_path}", CardError)
    except RotoscopeError as error:
        return change, f"filter card refused: {error}"
    return replace(change, filter_card=card), None


# -- parameters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamsRead:
    sections: dict[str, Any] | None  # the watched sections; None: not readable as YAML at all
    problem: str | None  # why it is not a valid parameters document (None: it is)


def params_changes(history: Revisions, a: str, b: str) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """The watched sections that differ, and one warning per revision whose params.yaml is invalid.

    An invalid document is still compared where it could be read: a reviewer wants to see what a
    broken pull request changes. One that cannot be read at all shows as ``params.yaml`` changed.
    """
    before, after = read_params(history, a), read_params(history, b)
    reads = ((a, before), (b, after))
    warnings = [f"params.yaml at {rev} is invalid: {read.problem}" for rev, read in reads if read.problem]
    if before.sections is None or after.sections is None:
        states = tuple("refused (see warnings)" if r.sections is None else "read" for r in (before, after))
        return ({"params.yaml": states} if states[0] != states[1] else {}), warnings
    return flat_changes(before.sections, after.sections), warnings


def read_params(history: Revisions, rev: str) -> ParamsRead:
    where = f"{rev}:params.yaml"
    try:  # yamlsafe refuses alias bombs and deep nesting before anything expands them
        document = yamlsafe.load(history.text(rev, "params.yaml", yamlsafe.MAX_BYTES * 2) or "{}", where)
    except RotoscopeError as error:
        return ParamsRead(None, error.problem)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        return ParamsRead(None, "must be a mapping of sections")
    sections = {key: document.get(key) for key in _WATCHED_PARAMS}
    try:
        studio_params.model(document, where)
    except ParamsError as error:
        return ParamsRead(sections, error.problem)
    except (TypeError, ValueError) as error:  # keys YAML allows and the schema cannot test (a list)
        return ParamsRead(sections, f"not a parameters document ({type(error).__name__})")
    return ParamsRead(sections, None)


# -- what validation cannot make safe ------------------------------------------------------------


def fork_warnings(history: Revisions, a: str, b: str) -> list[str]:
    """What ``b`` would do to whoever runs DVC on it: changed stage commands, remotes moved,
    paths and symlinks that leave the studio or land in the folders rotoscope writes."""
    files = history.files(b)
    return [
        *stage_command_warnings(history, a, b),
        *dvc_config_warnings(history, a, b),
        *leaving_path_warnings(history, b, files),
        *symlink_warnings(history, b, files),
    ]


def _yaml_file(history: Revisions, rev: str, path: str, text: str | None = None) -> Any:
    """A DVC YAML file at ``rev`` read under yamlsafe's limits (RotoscopeError when refused)."""
    if text is None:
        text = history.text(rev, path, yamlsafe.MAX_BYTES * 2)
    return yamlsafe.load(text or "{}", f"{rev}:{path}") or {}


def stage_commands(document: Any) -> dict[str, str]:
    """dvc.yaml's stages and the command each runs, with what it is interpolated from: a
    ``foreach``/``matrix`` stage's items are part of its command (``${item}`` can be anything),
    and so are the file's ``vars``."""
    if not isinstance(document, dict):
        return {}
    stages = document.get("stages") if isinstance(document.get("stages"), dict) else {}
    found = {}
    for name, stage in stages.items():
        stage = stage if isinstance(stage, dict) else {}
        body = stage.get("do", stage) if isinstance(stage.get("do", stage), dict) else {}
        command = body.get("cmd")
        if isinstance(command, list):  # several commands, run one after another
            command = " && ".join(str(part) for part in command)
        shown = "(none)" if command is None else str(command)
        for source in ("foreach", "matrix", "vars"):
            if source in stage or source in body:
                shown += f" [{source}: {_json(stage.get(source, body.get(source)))}]"
        found[str(name)] = shown
    if "vars" in document:
        found["(vars of every stage)"] = _json(document["vars"])
    return found


def stage_command_warnings(history: Revisions, a: str, b: str) -> list[str]:
    """Each stage whose command ``dvc repro`` would run at ``b`` and did not at ``a``. (Commands
    interpolate names from params.yaml; those are checked by the params schema, reported above.)"""
    try:
        after = stage_commands(_yaml_file(history, b, "dvc.yaml"))
    except RotoscopeError as error:
        return [f"dvc.yaml at {b} cannot be read, check it before `dvc repro`: {error.problem}"]
    try:
        before = stage_commands(_yaml_file(history, a, "dvc.yaml"))
    except RotoscopeError:
        before = {}  # the older revision's own problem: every stage of b counts as new
    warnings = []
    for name, command in after.items():
        if name not in before:
            warnings.append(f"dvc.yaml at {b}: new stage {name!r}; `dvc repro` would run: {_clip(command)}")
        elif before[name] != command:
            warnings.append(
                f"dvc.yaml at {b}: stage {name!r} changed its command; `dvc repro` would run: "
                f"{_clip(command)} (was: {_clip(before[name])})"
            )
    return warnings


_REMOTE_SECTION = re.compile(r"""^'?\s*remote\s+"(?P<name>[^"]*)"\s*'?$""")


def dvc_settings(text: str, where: str) -> dict[str, str]:
    """The settings of a ``.dvc/config`` that say where data goes: ``core.remote``, every remote's
    (``remote.NAME.url``...) and the cache's. Parsed as INI, never through DVC's own loader."""
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\0none")
    try:
        parser.read_string(text, where)
    except configparser.Error as error:
        raise RotoscopeError(where, f"not a DVC config ({type(error).__name__})") from None
    found = {}
    for section in parser.sections():
        remote = _REMOTE_SECTION.match(section)
        prefix = f"remote.{remote['name']}" if remote else section.strip().strip("'").strip()
        for key, value in parser.items(section):
            setting = f"{prefix}.{key}"
            if remote or setting == "core.remote" or prefix == "cache":
                found[setting] = value
    return found


def dvc_config_warnings(history: Revisions, a: str, b: str) -> list[str]:
    """Remotes, the default remote and the cache that ``b``'s ``.dvc/config`` moves: ``dvc push``
    on it sends data where the fork says, and ``dvc pull`` (or this review page) fetches from there."""
    where = f"{b}:.dvc/config"
    try:
        after = dvc_settings(history.text(b, ".dvc/config", 1 << 20) or "", where)
    except RotoscopeError as error:
        return [
            f".dvc/config at {b} cannot be read, check it before `dvc push` or `dvc pull`: {error.problem}"
        ]
    try:
        before = dvc_settings(history.text(a, ".dvc/config", 1 << 20) or "", f"{a}:.dvc/config")
    except RotoscopeError:
        before = {}
    return [
        f".dvc/config at {b}: {_setting_name(key)} {_clip(before.get(key, '(none)'))} → "
        f"{_clip(after.get(key, '(none)'))}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def remote_settings(history: Revisions, rev: str) -> dict[str, str] | None:
    """What decides where DVC fetches from at ``rev``; None when its config cannot be read."""
    try:
        return dvc_settings(history.text(rev, ".dvc/config", 1 << 20) or "", f"{rev}:.dvc/config")
    except RotoscopeError:
        return None


def _setting_name(key: str) -> str:
    if key == "core.remote":
        return "default remote (core.remote)"
    if key.startswith("remote."):
        name, _, option = key[len("remote.") :].rpartition(".")
        return f"remote {name!r} {option}"
    return key


def leaves_studio(path: str) -> bool:
    """A path written in a DVC file that DVC would follow out of the studio: absolute, with '..',
    from the home folder, a URL (an external output)."""
    text = path.replace("\\", "/")
    return (
        text.startswith(("/", "~"))
        or re.match(r"^[A-Za-z]:", text) is not None
        or "://" in text
        or ".." in text.split("/")
    )


def dvc_file_paths(document: Any) -> list[str]:
    """The paths a ``.dvc`` file, ``dvc.lock`` or ``dvc.yaml`` names: each stage's ``wdir``,
    ``deps``, ``outs``, ``metrics``, ``plots`` and params files, a ``.dvc`` file's own."""
    if not isinstance(document, dict):
        return []
    stages = document.get("stages")
    bodies = [document]
    if isinstance(stages, dict):
        for stage in stages.values():
            if isinstance(stage, dict):
                bodies += [stage, stage["do"]] if isinstance(stage.get("do"), dict) else [stage]
    found = []
    for body in bodies:
        if isinstance(body.get("wdir"), str):
            found.append(body["wdir"])
        for key in ("deps", "outs", "metrics", "plots", "params"):
            found += _named_paths(body.get(key), key == "params")
    return found


def _named_paths(entries: Any, params: bool) -> list[str]:
    """Paths in a list of ``path``, ``{path: options}`` or ``{"path": path, ...}`` entries (and a
    lock's ``params``: a mapping of file to values)."""
    if isinstance(entries, dict):
        return [str(key) for key in entries] if params else []
    found = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str) and not params:
            found.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
            found.append(entry["path"])
        elif isinstance(entry, dict):  # dvc.yaml's {path: {cache: false}}, params' {file: [keys]}
            found += [str(key) for key in entry]
    return found


def leaving_path_warnings(history: Revisions, rev: str, files: list[TreeEntry]) -> list[str]:
    """Paths in ``.dvc`` files, ``dvc.lock`` and ``dvc.yaml`` that leave the studio: DVC checks out
    to them, removes them before a run, or reads them in."""
    tracked = [e for e in files if e.path.endswith(".dvc") or e.path in ("dvc.lock", "dvc.yaml")]
    tracked = [e for e in tracked if not e.path.startswith(".dvc/") and not e.is_symlink]
    warnings: list[str] = []
    for entry in tracked[:MAX_DVC_FILES]:
        if len(warnings) >= MAX_FILE_WARNINGS:
            break
        try:
            document = _yaml_file(history, rev, entry.path, history.entry_text(rev, entry))
        except RotoscopeError as error:
            if entry.path != "dvc.yaml":  # dvc.yaml's own problem is reported with its commands
                warnings.append(f"{entry.path} at {rev} cannot be read, check it before DVC: {error.problem}")
            continue
        outside = [path for path in dvc_file_paths(document) if leaves_studio(path)]
        if outside:
            shown = ", ".join(_clip(path, 120) for path in outside[:5])
            more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
            warnings.append(f"{entry.path} at {rev} names paths outside the studio: {shown}{more}")
    if len(warnings) >= MAX_FILE_WARNINGS or len(tracked) > MAX_DVC_FILES:
        warnings.append(f"only the first DVC files at {rev} were checked (it has {len(tracked)})")
    return warnings


def symlink_warnings(history: Revisions, rev: str, files: list[TreeEntry]) -> list[str]:
    """Committed symlinks that lead out of the studio, into the folders rotoscope writes and
    deletes in, or that stand in for one of those folders: a checkout makes them real links."""
    warnings = []
    links = [entry for entry in files if entry.is_symlink]
    for entry in links[:MAX_FILE_WARNINGS]:
        try:
            target = history.entry_text(rev, entry, 4096)
            problem = symlink_problem(entry.path, target)
        except RotoscopeError:  # a target too long or not UTF-8: nothing a studio needs
            target, problem = "(unreadable)", "cannot be read"
        if problem:
            warnings.append(f"symlink {entry.path} → {_clip(target, 200)} at {rev} {problem}")
    if len(links) > MAX_FILE_WARNINGS:
        warnings.append(f"{len(links) - MAX_FILE_WARNINGS} more committed symlink(s) at {rev} not checked")
    return warnings


def symlink_problem(link: str, target: str) -> str | None:
    """Why a symlink at studio path ``link`` pointing at ``target`` is dangerous, or None."""
    if target.startswith("/") or "\0" in target:
        return "leaves the studio"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
    if resolved == ".." or resolved.startswith("../"):
        return "leaves the studio"
    if resolved.split("/")[0] in _GENERATED:
        return f"points into {resolved.split('/')[0]}/, where rotoscope writes and deletes"
    if link.split("/")[0] in _GENERATED:
        return f"stands in {link.split('/')[0]}/, where rotoscope writes and deletes"
    return None


def _clip(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- one manifest's history ------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    commit: str
    date: str
    subject: str  # anyone's words: shown through text.terminal
    change: ManifestChange


def manifest_log(root: Path, path: Path) -> list[LogEntry]:
    """Each revision that changed a manifest, newest first, with what it changed."""
    history = Revisions(root)
    relative = studio_path(root, path)
    entries = []
    for commit, date, subject in history.commits_touching(relative):
        try:
            before = history.manifest_document(f"{commit}^", relative)
            after = history.manifest_document(commit, relative)
            change = compare_manifests(relative, before, after)
        except RotoscopeError as error:
            change = refused_change(relative, error)
        entries.append(LogEntry(commit, date, subject, change))
    if not entries:
        raise RotoscopeError(path, "no commit has this manifest (commit it first)")
    return entries
