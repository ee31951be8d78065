"""The job kinds and scheduler passes declared in settings: built once, checked at start-up."""

import pytest
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from opsdb import checks as opsdb_checks
from opsdb.choices import JobKind
from opsdb.leases import LeasedJob
from opsdb.registry import JobKindRegistry, PassRegistry, UnknownJobKind, job_kinds, scheduler_passes
from opsdb.work import JobKindHandler
from staging.models import LongTermArchiveTransfer, StagingJob
from staging.work import StageHandler
from transfers.work import UnpackHandler

OK = "staging.work.StageHandler"


class Unfinished(JobKindHandler):
    """Leaves the abstract hooks unwritten."""

    kind = JobKind.STAGE
    model = StagingJob


class Unknown(StageHandler):
    kind = "teleport"


class NoModel(StageHandler):
    model = None


class WrongModel(StageHandler):
    model = LongTermArchiveTransfer  # whose KIND is archive


class NoLabel(StageHandler):
    attention_label = ""


class NoSiteField(StageHandler):
    site_field = ""


class NotAHandler:
    pass


def built(*paths: str) -> JobKindRegistry:
    registry = JobKindRegistry()
    registry.build(paths)
    return registry


def ids(registry) -> list[str]:
    return [problem.id for problem in registry.problems]


def test_the_registry_is_built_from_settings_in_declared_order():
    assert [f"{type(h).__module__}.{type(h).__name__}" for h in job_kinds] == settings.JOB_KINDS
    assert job_kinds.problems == []


def test_every_job_model_has_exactly_one_handler():
    models = {m for m in apps.get_models() if issubclass(m, LeasedJob)}

    assert set(job_kinds.models()) == models
    assert len(job_kinds.models()) == len(models)
    assert all(job_kinds.for_model(m).model is m and m.KIND == job_kinds.for_model(m).kind for m in models)


def test_the_handlers_are_found_by_kind():
    assert isinstance(job_kinds["stage"], StageHandler)
    assert job_kinds.get("teleport") is None
    assert "package" in job_kinds
    with pytest.raises(UnknownJobKind):
        job_kinds["teleport"]


def test_nothing_is_added_after_start_up():
    with pytest.raises(RuntimeError, match="built once"):
        job_kinds.build(settings.JOB_KINDS)
    with pytest.raises(RuntimeError, match="built once"):
        scheduler_passes.build(settings.SCHEDULER_PASSES)


def test_a_registry_not_built_yet_refuses_to_be_read():
    with pytest.raises(RuntimeError, match="not built yet"):
        list(JobKindRegistry())
    with pytest.raises(RuntimeError, match="not built yet"):
        list(PassRegistry())


@pytest.mark.parametrize(("path", "problem"), [
    ("staging.work.NoSuchHandler", "opsdb.E001"),
    ("nowhere.Handler", "opsdb.E001"),
    (f"{__name__}.NotAHandler", "opsdb.E002"),
    (f"{__name__}.Unfinished", "opsdb.E002"),
    (f"{__name__}.NoLabel", "opsdb.E002"),
    (f"{__name__}.NoSiteField", "opsdb.E002"),
    (f"{__name__}.Unknown", "opsdb.E003"),
    (f"{__name__}.NoModel", "opsdb.E004"),
    (f"{__name__}.WrongModel", "opsdb.E005"),
])
def test_a_declared_kind_that_cannot_be_built_is_a_problem(path, problem):
    registry = built(*[p for p in settings.JOB_KINDS if p != OK], path)

    assert ids(registry) == [problem, "opsdb.E007"]  # and the stage model is left without a handler
    assert registry.kinds() == ["archive", "unpack", "transfer", "package", "delete", "verify"]
    assert path in registry.problems[0].msg


def test_a_kind_declared_twice_is_a_problem():
    registry = built(*settings.JOB_KINDS, OK)

    assert ids(registry) == ["opsdb.E006"]
    assert isinstance(registry["stage"], StageHandler)


def test_a_job_model_without_a_declared_kind_is_a_problem():
    registry = built(*[p for p in settings.JOB_KINDS if not p.endswith("PackageHandler")])

    assert ids(registry) == ["opsdb.E007"]
    assert "transfers.DataTransferPackage" in registry.problems[0].msg


def test_a_pass_that_cannot_be_imported_is_a_problem():
    registry = PassRegistry()
    registry.build([("leases", "opsdb.recovery.expire_leases"), ("teleporting", "opsdb.recovery.teleport")])

    assert [name for name, _ in registry] == ["leases"]
    assert [p.id for p in registry.problems] == ["opsdb.E008"]


def test_the_system_check_refuses_to_start_with_a_broken_declaration(monkeypatch):
    broken = built(*settings.JOB_KINDS[:-1], "transfers.work.NoSuchHandler")
    monkeypatch.setattr(opsdb_checks, "job_kinds", broken)

    found = [m.id for m in checks.run_checks() if m.id and m.id.startswith("opsdb.")]

    assert found == ["opsdb.E001", "opsdb.E007"]
    with pytest.raises(SystemCheckError, match="NoSuchHandler"):
        call_command("check")


def test_the_declared_project_passes_its_system_checks():
    assert [m for m in checks.run_checks() if m.id and m.id.startswith("opsdb.")] == []


def test_the_scheduler_passes_are_declared_in_order():
    assert [name for name, _ in scheduler_passes] == [name for name, _ in settings.SCHEDULER_PASSES]
    assert dict(scheduler_passes)["bundling"].__module__ == "transfers.planning"


def test_handler_hooks_are_declared_on_the_base_class():
    """Every hook the machinery calls exists on the base class, so a new kind sees the whole contract there."""
    hooks = {"at_sites", "for_methods", "claimable", "claim_guard", "queryset", "site_of", "payload",
             "apply_result", "record_progress", "on_failed"}

    assert hooks <= set(vars(JobKindHandler))
    assert JobKindHandler.__abstractmethods__ == {"at_sites", "site_of", "payload", "apply_result"}
    assert "on_failed" not in vars(UnpackHandler)  # the base's no-op
