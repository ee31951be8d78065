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
        ("staging.stagingjobpackage", ("view", "change")), ("staging.fixitycheck", ("view", "change")),
        ("custody.deletionjob", ("view", "change")), ("custody.deletionitem", ("view",)),
    ],
}
# Operators manage accounts within their own permissions (opsdb/admin_accounts.py); API tokens are
# opsdb.apitoken, a domain model they hold every permission on.
OPERATOR_EXTRA = [("auth.user", ("view", "add", "change")), ("django_fsm_log.statelog", ("view",))]
ROLE_GROUPS = (OPERATORS, SCIENTISTS, WORKERS)


# --- who is what: one cache per request's user object ------------------------------------------

def group_names(user) -> set[str]:
    """The role groups ``user`` is in, read once per user object (one query per request at most).

    Token authentication fills the cache from its own (cached) read; see ``remember_roles``.
    """
    if not user or not user.is_authenticated:
        return set()
    cache = getattr(user, "_opsdb_groups", None)
    if cache is None:
        cache = set(user.groups.filter(name__in=ROLE_GROUPS).values_list("name", flat=True))
        user._opsdb_groups = cache
    return cache


def remember_roles(user, *, groups: set[str], site_ids: list[int] | None) -> None:
    """Keep what token authentication already knows about ``user`` for the rest of this request.

    ``groups``: the role groups (``ROLE_GROUPS``) the user is in; ``site_ids``: the sites it is
    restricted to (None: every site). The user object lives for one request only, so nothing set
    here outlives the request.
    """
    user._opsdb_groups = set(groups)
    user._opsdb_site_ids = site_ids


def is_operator(user) -> bool:
    return bool(user and user.is_authenticated and user.is_superuser) or OPERATORS in group_names(user)


def is_worker(user) -> bool:
    return WORKERS in group_names(user)


def can_stage(user) -> bool:
    """Scientists and operators may browse the catalogue and request staging."""
    return is_operator(user) or SCIENTISTS in group_names(user)


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
