"""The scientist's selection of raw packages, kept in the session across searches and pages."""

from collections.abc import Iterable

from django.conf import settings

from opsdb.models import RawDataPackage

SESSION_KEY = "staging_selection"


class SelectionFull(Exception):
    """Adding these packages would pass the selection bound."""


class Selection:
    """Package ids in the session, in the order they were picked."""

    def __init__(self, session):
        self.session = session
        self.ids: list[int] = [int(i) for i in session.get(SESSION_KEY, [])]

    @staticmethod
    def limit() -> int:
        return settings.STAGING_SELECTION_MAX

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, package_id: int) -> bool:
        return package_id in set(self.ids)

    def add(self, package_ids: Iterable[int]) -> int:
        """Add packages (all or none); SelectionFull past the bound; returns how many were new."""
        known = set(self.ids)
        new = [pk for pk in dict.fromkeys(package_ids) if pk not in known]
        if len(self.ids) + len(new) > self.limit():
            raise SelectionFull(
                f"A request can hold at most {self.limit()} packages; this would make "
                f"{len(self.ids) + len(new)}. Narrow the search or split it into several requests."
            )
        self.ids.extend(new)
        self._save()
        return len(new)

    def remove(self, package_ids: Iterable[int]) -> int:
        gone = set(package_ids)
        before = len(self.ids)
        self.ids = [pk for pk in self.ids if pk not in gone]
        self._save()
        return before - len(self.ids)

    def clear(self) -> None:
        self.ids = []
        self._save()

    def packages(self):
        return RawDataPackage.objects.filter(pk__in=self.ids)

    def _save(self) -> None:
        self.session[SESSION_KEY] = self.ids
        self.session.modified = True
