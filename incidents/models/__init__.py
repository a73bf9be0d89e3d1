"""The incidents app's models, one module per area."""

from __future__ import annotations

from incidents.models.incident import Incident, IncidentEvent, IncidentQuerySet
from incidents.models.maintenance import Maintenance
from incidents.models.status import (
    Component,
    ComponentGroup,
    ComponentStatus,
    PublicIncident,
    PublicUpdate,
    StatusPage,
    Subscriber,
)

__all__ = [
    "Component",
    "ComponentGroup",
    "ComponentStatus",
    "Incident",
    "IncidentEvent",
    "IncidentQuerySet",
    "Maintenance",
    "PublicIncident",
    "PublicUpdate",
    "StatusPage",
    "Subscriber",
]
