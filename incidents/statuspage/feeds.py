"""Atom and RSS feeds of a status page's incident updates (Django's syndication framework).

One entry per update, newest first: feed readers show entries, and an update
("Identified: a fix is being deployed") is the news. The entry's title is the
incident's title and the update's status; its GUID is the update's permalink,
stable for as long as the page keeps its host. Drafts never appear.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.syndication.views import Feed
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import linebreaks_filter
from django.utils.feedgenerator import Atom1Feed, Rss201rev2Feed
from django.utils.html import format_html

from incidents.models import PublicUpdate, StatusPage
from incidents.statuspage.pages import cached, incident_url, page_for, page_url, public_url

ITEMS = 50
CACHE_CONTROL = "public, max-age=60"


class IncidentUpdatesFeed(Feed):
    feed_type = Rss201rev2Feed
    url_name = "status-feed-rss"

    def __call__(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        page = page_for(request)

        def render() -> HttpResponse:
            response = super(IncidentUpdatesFeed, self).__call__(request, *args, **kwargs)
            response["Cache-Control"] = CACHE_CONTROL
            return response

        return cached(request, page, f"feed:{self.url_name}", render)

    def get_object(self, request: HttpRequest, *args: object, **kwargs: object) -> StatusPage:
        return page_for(request)

    def title(self, page: StatusPage) -> str:
        return f"{page.title} — incidents"

    def link(self, page: StatusPage) -> str:
        return page_url(page)

    def feed_url(self, page: StatusPage) -> str:
        return public_url(page, self.url_name)

    def description(self, page: StatusPage) -> str:
        return page.description or f"Incidents and their updates on {page.title}"

    def author_name(self, page: StatusPage) -> str:
        return page.title

    def items(self, page: StatusPage) -> QuerySet[PublicUpdate]:
        return (
            PublicUpdate.objects.filter(incident__page=page, incident__published_at__isnull=False)
            .select_related("incident__page")
            .order_by("-created_at", "-id")[:ITEMS]
        )

    # Plain text: the generator escapes it for XML once, and an Atom <title> is text.
    # (Django's default escapes it a second time, for RSS readers that read HTML.)
    def item_title(self, update: PublicUpdate) -> str:
        return f"{update.incident.title} — {update.get_status_display()}"

    def item_description(self, update: PublicUpdate) -> str:
        # HTML (Atom's summary type="html"): the body, typed as plain text, is escaped.
        body = linebreaks_filter(update.body, autoescape=True)  # escaped, then marked safe
        return format_html("<p><strong>{}</strong></p>{}", update.get_status_display(), body)

    def item_link(self, update: PublicUpdate) -> str:
        return f"{incident_url(update.incident.page, update.incident_id)}#update-{update.pk}"

    def item_guid(self, update: PublicUpdate) -> str:
        return self.item_link(update)

    def item_pubdate(self, update: PublicUpdate) -> datetime:
        return update.created_at

    def item_updateddate(self, update: PublicUpdate) -> datetime:
        return update.created_at

    def item_categories(self, update: PublicUpdate) -> list[str]:
        return [update.get_status_display()]


class IncidentUpdatesAtom(IncidentUpdatesFeed):
    feed_type = Atom1Feed
    url_name = "status-feed-atom"

    def subtitle(self, page: StatusPage) -> str:
        return self.description(page)


rss = IncidentUpdatesFeed()
atom = IncidentUpdatesAtom()
