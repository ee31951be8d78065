"""Workers and their API tokens in the admin.

Tokens are stored as digests: the admin shows a token once, on the page that answers its creation
or rotation, and afterwards only its first characters. Operators revoke and rotate tokens here
(or with ``manage.py create_worker --rotate/--revoke``); revoked tokens stay listed.
"""

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import Count, Max, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from opsdb import roles
from opsdb.models import ApiToken, WorkerProfile
from opsdb.tokens import api_token_create, api_token_revoke, api_token_rotate

SHOWN_ONCE_TEMPLATE = "admin/opsdb/apitoken/shown_once.html"


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Workers' tokens: made here (shown once), revoked and rotated by action; never deleted."""

    list_display = ("shown_prefix", "user", "name", "state", "created_at", "last_used_at", "created_by")
    list_filter = (TokenStateFilter,)
    search_fields = ("user__username", "name", "prefix")
    list_select_related = ("user", "created_by")
    actions = ("revoke_selected", "rotate_selected")
    readonly_fields = ("shown_prefix", "state", "created_at", "created_by", "last_used_at", "revoked_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name")
        return ("shown_prefix", "user", "name", "state", "created_at", "created_by", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "user") if obj is not None else self.readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["queryset"] = User.objects.filter(groups__name=roles.WORKERS, is_active=True).order_by("username")
            kwargs["help_text"] = "A worker account (manage.py create_worker makes one)."
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row records who had which token until when

    @admin.display(description="token", ordering="prefix")
    def shown_prefix(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="state", ordering="revoked_at")
    def state(self, obj: ApiToken) -> str:
        return "active" if obj.is_active else f"revoked {obj.revoked_at:%Y-%m-%d %H:%M}"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        WorkerProfile.objects.get_or_create(user=obj.user)  # listed under Workers from now on
        row, token = api_token_create(user=obj.user, name=obj.name, by=request.user)
        request._opsdb_new_tokens = [(row, token)]
        obj.pk, obj.prefix, obj.digest, obj.created_at = row.pk, row.prefix, row.digest, row.created_at
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        return self.shown_once(request, request._opsdb_new_tokens, revoked=0)

    def shown_once(self, request, tokens: list[tuple[ApiToken, str]], *, revoked: int) -> TemplateResponse:
        context = {**self.admin_site.each_context(request), "tokens": tokens, "revoked": revoked,
                   "opts": self.model._meta, "title": "New API tokens"}
        response = TemplateResponse(request, SHOWN_ONCE_TEMPLATE, context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke_selected(self, request, queryset):
        active = list(queryset.filter(revoked_at__isnull=True))
        for token in active:
            api_token_revoke(token=token)
        self.message_user(request, f"{len(active)} token(s) revoked; they no longer work.", messages.SUCCESS)

    @admin.action(description="Rotate the selected tokens (revoke each, make a new one)", permissions=["change"])
    def rotate_selected(self, request, queryset):
        active = list(queryset.filter(revoked_at__isnull=True).select_related("user"))
        if not active:
            self.message_user(request, "No active token selected: nothing rotated.", messages.WARNING)
            return None
        fresh = [api_token_rotate(token=token, by=request.user) for token in active]
        return self.shown_once(request, fresh, revoked=len(active))


@admin.register(WorkerProfile)
class WorkerProfileAdmin(admin.ModelAdmin):
    """The workers known by token: the sites each may claim jobs at, its tokens and when it was last seen."""

    list_display = ["user", "site_names", "tokens", "last_seen"]
    list_select_related = ["user"]
    filter_horizontal = ["sites"]
    raw_id_fields = ["user"]
    search_fields = ["user__username"]

    def get_queryset(self, request):
        active = Q(user__api_tokens__revoked_at__isnull=True)
        return super().get_queryset(request).prefetch_related("sites").annotate(
            n_active_tokens=Count("user__api_tokens", filter=active),
            last_seen=Max("user__api_tokens__last_used_at"),
        )

    @admin.display(description="sites")
    def site_names(self, profile: WorkerProfile) -> str:
        return ", ".join(site.name for site in profile.sites.all()) or "every site"

    @admin.display(description="active tokens", ordering="n_active_tokens")
    def tokens(self, profile: WorkerProfile) -> str:
        changelist = reverse("admin:opsdb_apitoken_changelist")
        add = reverse("admin:opsdb_apitoken_add")
        return format_html('<a href="{}?user__id__exact={}">{}</a> · <a href="{}?user={}">new token</a>',
                           changelist, profile.user_id, profile.n_active_tokens, add, profile.user_id)

    @admin.display(description="last seen", ordering="last_seen")
    def last_seen(self, profile: WorkerProfile) -> str:
        return f"{profile.last_seen:%Y-%m-%d %H:%M:%S}" if profile.last_seen else "never"
