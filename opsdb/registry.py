"""The plug-in points declared in settings, built once at start-up: job kinds and scheduler passes.

``settings.JOB_KINDS`` lists the job kinds' handler classes (dotted paths) in claim-priority order;
``settings.SCHEDULER_PASSES`` lists the scheduler's passes as ``(name, dotted path)`` in the order
of a tick. ``OpsdbConfig.ready()`` builds both; what cannot be built is reported by the system
check ``opsdb.E001``–``opsdb.E007`` (``opsdb/checks.py``) instead of being skipped. Nothing can be
added afterwards. The base app names no app above it here: the declarations are project wiring.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.apps import apps
from django.core import checks
from django.utils.module_loading import import_string

from opsdb.choices import JobKind
from opsdb.leases import LeasedJob
from opsdb.work import JobKindHandler


class UnknownJobKind(KeyError):
    """No handler is declared for this kind."""


class JobKindRegistry:
    """The declared job kinds, in claim-priority order (position 0 is claimed first)."""

    def __init__(self) -> None:
        self._handlers: dict[str, JobKindHandler] | None = None
        self._by_model: dict[type, JobKindHandler] = {}
        self.problems: list[checks.CheckMessage] = []

    def build(self, paths: Sequence[str]) -> None:
        """Instantiate every declared handler once; problems are kept for the system check."""
        if self._handlers is not None:
            raise RuntimeError("The job kinds are built once, at start-up, from settings.JOB_KINDS.")
        handlers: dict[str, JobKindHandler] = {}
        for path in paths:
            handler = self._load(path)
            if handler is None:
                continue
            if handler.kind in handlers or handler.model in self._by_model:
                self.problems.append(checks.Error(
                    f"{path} declares the job kind {handler.kind!r} or model {handler.model.__name__} a second time.",
                    hint="Declare each kind once in settings.JOB_KINDS.", id="opsdb.E006"))
                continue
            handlers[handler.kind] = handler
            self._by_model[handler.model] = handler
        self._handlers = handlers
        self.problems += self._undeclared_models()

    def _load(self, path: str) -> JobKindHandler | None:
        try:
            handler_class = import_string(path)
        except ImportError as exc:
            self.problems.append(checks.Error(f"settings.JOB_KINDS names {path!r}, which cannot be imported: {exc}",
                                              hint="Write the handler, or remove the line.", id="opsdb.E001"))
            return None
        if not (isinstance(handler_class, type) and issubclass(handler_class, JobKindHandler)):
            self.problems.append(checks.Error(f"{path} is not a JobKindHandler subclass.", id="opsdb.E002"))
            return None
        try:
            handler = handler_class()
        except TypeError as exc:  # abstract hooks left unwritten
            self.problems.append(checks.Error(f"{path} cannot be used: {exc}",
                                              hint="Write every abstract hook of opsdb.work.JobKindHandler.",
                                              id="opsdb.E002"))
            return None
        problem = self._model_problem(path, handler)
        if problem is not None:
            self.problems.append(problem)
            return None
        return handler

    @staticmethod
    def _model_problem(path: str, handler: JobKindHandler) -> checks.CheckMessage | None:
        kind = getattr(handler, "kind", None)
        if kind not in JobKind.values:
            return checks.Error(f"{path} handles the job kind {kind!r}, which is not in opsdb.choices.JobKind.",
                                hint="Add the kind's name to JobKind.", id="opsdb.E003")
        model = getattr(handler, "model", None)
        if not (isinstance(model, type) and issubclass(model, LeasedJob) and not model._meta.abstract
                and apps.is_installed(model._meta.app_config.name)):
            return checks.Error(f"{path} has no concrete LeasedJob model of an installed app.",
                                hint="Set the handler's model.", id="opsdb.E004")
        if not handler.attention_label:
            return checks.Error(f"{path} has no attention_label (the admin's panel of jobs waiting for an operator).",
                                id="opsdb.E002")
        if not handler.site_field:
            return checks.Error(f"{path} has no site_field (the lookup from a job to its site, for explanations).",
                                id="opsdb.E002")
        if getattr(model, "KIND", None) != kind:
            return checks.Error(f"{path} handles {kind!r} but its model {model.__name__}.KIND is "
                                f"{getattr(model, 'KIND', None)!r}.", id="opsdb.E005")
        return None

    def _undeclared_models(self) -> list[checks.CheckMessage]:
        return [
            checks.Error(f"The job model {model._meta.label} has no handler in settings.JOB_KINDS: its jobs would "
                         "never be claimed nor their leases recovered.", id="opsdb.E007")
            for model in apps.get_models()
            if issubclass(model, LeasedJob) and model not in self._by_model
        ]

    @property
    def _built(self) -> dict[str, JobKindHandler]:
        if self._handlers is None:
            raise RuntimeError("The job kinds are not built yet (OpsdbConfig.ready() builds them).")
        return self._handlers

    def __iter__(self) -> Iterator[JobKindHandler]:
        """The handlers in claim-priority order."""
        return iter(self._built.values())

    def __len__(self) -> int:
        return len(self._built)

    def __contains__(self, kind: object) -> bool:
        return kind in self._built

    def __getitem__(self, kind: str) -> JobKindHandler:
        try:
            return self._built[kind]
        except KeyError:
            raise UnknownJobKind(kind) from None

    def get(self, kind: str) -> JobKindHandler | None:
        return self._built.get(kind)

    def for_model(self, model: type) -> JobKindHandler:
        """The handler of a job model (or of a job's class)."""
        self._built  # noqa: B018  (the same "not built yet" error as every other read)
        return self._by_model[model]

    def kinds(self) -> list[str]:
        return list(self._built)

    def models(self) -> list[type[LeasedJob]]:
        return [handler.model for handler in self]

    def position(self, kind: str) -> int:
        """The kind's place in the declared order: 0 is claimed first."""
        return self.kinds().index(kind)


class PassRegistry:
    """The scheduler's passes, in the order of one tick."""

    def __init__(self) -> None:
        self._passes: list[tuple[str, Callable[..., Any]]] | None = None
        self.problems: list[checks.CheckMessage] = []

    def build(self, declared: Iterable[tuple[str, str]]) -> None:
        if self._passes is not None:
            raise RuntimeError("The scheduler passes are built once, at start-up, from settings.SCHEDULER_PASSES.")
        passes = []
        for name, path in declared:
            try:
                passes.append((name, import_string(path)))
            except ImportError as exc:
                self.problems.append(checks.Error(
                    f"settings.SCHEDULER_PASSES names {path!r} for the pass {name!r}, which cannot be imported: {exc}",
                    id="opsdb.E008"))
        self._passes = passes

    def __iter__(self) -> Iterator[tuple[str, Callable[..., Any]]]:
        if self._passes is None:
            raise RuntimeError("The scheduler passes are not built yet (OpsdbConfig.ready() builds them).")
        return iter(self._passes)


job_kinds = JobKindRegistry()
scheduler_passes = PassRegistry()
