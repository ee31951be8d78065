"""The three roles of DESIGN.md as Django groups, and the permissions each one holds."""

OPERATORS = "operators"
SCIENTISTS = "scientists"
WORKERS = "workers"

DOMAIN_APPS = ("opsdb", "transfers", "staging", "custody")
CATALOGUE_MODELS = (
    "opsdb.site", "opsdb.datalocation", "opsdb.instrument", "opsdb.observation", "opsdb.rawdatapackage",
    "opsdb.rawdatafile", "opsdb.rawdatapackagecopy", "opsdb.rawdatafilecopy",
)

# (app_label.model, actions) per group; operators get every action on every domain model.
ROLE_PERMISSIONS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    SCIENTISTS: [(m, ("view",)) for m in CATALOGUE_MODELS]
    + [("staging.stagingjob", ("view", "add", "change")), ("staging.stagingjobpackage", ("view",))],
    WORKERS: [
        # Workers read the topology they work in (sites, locations, routes) besides their own jobs.
        ("opsdb.site", ("view",)), ("opsdb.datalocation", ("view",)), ("opsdb.instrument", ("view",)),
        ("opsdb.observation", ("view", "add")), ("transfers.datatransferroute", ("view",)),
        ("opsdb.rawdatapackage", ("view", "add")), ("opsdb.rawdatafile", ("view", "add")),
        ("opsdb.rawdatapackagecopy", ("view", "add", "change")),
        ("opsdb.rawdatafilecopy", ("view", "add", "change")),
        ("transfers.datatransferpackage", ("view", "change")), ("transfers.datatransfer", ("view", "change")),
        ("transfers.datatransferunpack", ("view", "change")), ("opsdb.datatransferlog", ("view", "add")),
        ("transfers.datatransferpackagecopy", ("view", "add", "change")),
        ("staging.longtermarchivetransfer", ("view", "change")), ("staging.stagingjob", ("view", "change")),
        ("staging.stagingjobpackage", ("view", "change")),
        ("custody.deletionjob", ("view", "change")), ("custody.deletionitem", ("view",)),
    ],
}
# Operators manage accounts within their own permissions (opsdb/admin_accounts.py); API tokens are
# opsdb.apitoken, a domain model they hold every permission on.
OPERATOR_EXTRA = [("auth.user", ("view", "add", "change")), ("django_fsm_log.statelog", ("view",))]


def sync_role_groups(apps) -> None:
    """Create the groups and give them exactly their permissions (works on historical apps too)."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # Historical app configs carry no models module, and create_permissions skips those; give them
        # one for the call and put back what was there (the live registry's configs must keep theirs).
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    everything = Permission.objects.filter(content_type__app_label__in=DOMAIN_APPS)
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    operators.permissions.set(list(everything) + _lookup(Permission, OPERATOR_EXTRA))
    for name, grants in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(_lookup(Permission, grants))


def _lookup(Permission, grants):
    perms = []
    for model_label, actions in grants:
        app_label, model = model_label.split(".")
        codenames = [f"{action}_{model}" for action in actions]
        perms.extend(Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))
    return perms
