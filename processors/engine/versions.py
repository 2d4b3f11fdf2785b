"""Workflow versions: what a version is, and the registry of versions a worker has loaded side by side.

A workflow's version is the ``version`` it declares, or, when it declares
none, ``fp-`` and the fingerprint of its declaration
(:func:`processors.engine.snapshot.fingerprint`: steps, order, handlers,
retry policies, timeouts). Every run records the version it started on and
finishes on it; a new run starts on the *newest* loaded version of its
workflow, which is the one loaded last (``--workflow`` order), not the one
whose name sorts last: a fingerprint does not sort.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from processors.engine.snapshot import fingerprint
from processors.engine.workflow import Workflow


def version_of(wf: Workflow) -> str:
    """The version runs of ``wf`` record: its declared one, else ``fp-<fingerprint of its declaration>``."""
    return wf.version or f"fp-{fingerprint(wf)}"


class VersionConflict(ValueError):
    """Two loaded workflows share a name and a version but differ, or versions of one name take other topics."""


class Versions(Mapping[str, Workflow]):
    """The workflows a worker loaded, by name and version; as a mapping, each name's newest version."""

    def __init__(self, workflows: Iterable[Workflow]) -> None:
        self._by: dict[str, dict[str, Workflow]] = {}
        self._continued: dict[str, dict[str, Workflow]] = {}  # versions finished by a later declaration (patches)
        for wf in workflows:
            for older in wf.continues:
                self._continued.setdefault(wf.name, {})[older] = wf
            loaded = self._by.setdefault(wf.name, {})
            v = version_of(wf)
            if v in loaded and loaded[v] is not wf:
                raise VersionConflict(f"workflow {wf.name} version {v} is loaded twice, from two declarations")
            first = next(iter(loaded.values()), wf)
            if (first.input_topic, first.output_topic) != (wf.input_topic, wf.output_topic):
                raise VersionConflict(f"versions of workflow {wf.name} must read and write the same topics")
            loaded.pop(v, None)
            loaded[v] = wf  # insertion order: the last loaded is the newest

    def __getitem__(self, name: str) -> Workflow:
        return next(reversed(self._by[name].values()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._by)

    def __len__(self) -> int:
        return len(self._by)

    def version(self, name: str, version: str | None) -> Workflow | None:
        """The loaded ``version`` of workflow ``name`` (None or "": its newest), or None if it is not loaded."""
        loaded = self._by.get(name)
        if not loaded:
            return None
        if not version:
            return self[name]
        return loaded.get(version) or self._continued.get(name, {}).get(version)

    def loaded(self, name: str) -> list[str]:
        """The versions of ``name`` loaded, oldest first (a declaration's own; then those it continues)."""
        own = list(self._by.get(name, {}))
        return own + [v for v in self._continued.get(name, {}) if v not in own]

    def all(self) -> list[Workflow]:
        """Every loaded workflow version."""
        return [wf for loaded in self._by.values() for wf in loaded.values()]


def resolve(workflows: Mapping[str, Workflow], name: str, version: str | None) -> Workflow | None:
    """The workflow a command or run of ``name`` at ``version`` runs on, from a :class:`Versions` or a plain mapping.

    A plain mapping (one version per name, as replay builds) answers only when its workflow is that version
    (or no version is asked for); nothing is ever guessed.
    """
    if isinstance(workflows, Versions):
        return workflows.version(name, version)
    wf = workflows.get(name)
    if wf is None or (version and version_of(wf) != version and version not in wf.continues):
        return None
    return wf
