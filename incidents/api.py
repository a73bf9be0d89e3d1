"""The JSON API for incidents (/api/v1/incidents/): read them, acknowledge, resolve, add notes.

The actions call incidents.services, the same functions as the admin, the
acknowledge link and the on-call console.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from incidents import services
from incidents.models import Incident, IncidentEvent


class IncidentEventSerializer(serializers.ModelSerializer[IncidentEvent]):
    class Meta:
        model = IncidentEvent
        fields = ["kind", "at", "actor", "message"]


class IncidentSerializer(serializers.ModelSerializer[Incident]):
    monitor_name = serializers.CharField(source="monitor.name", read_only=True, default="")
    events = IncidentEventSerializer(many=True, read_only=True)

    class Meta:
        model = Incident
        fields = [
            "id", "monitor", "monitor_name", "title", "severity", "status", "reason",
            "opened_at", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by",
            "resolution_note", "suppression", "events",
        ]  # fmt: skip
        read_only_fields = fields


class ResolveSerializer(serializers.Serializer[dict[str, str]]):
    note = serializers.CharField(required=False, allow_blank=True, max_length=10000, default="")


class NoteSerializer(serializers.Serializer[dict[str, str]]):
    text = serializers.CharField(max_length=10000)


def actor_of(request: Request) -> str:
    user = request.user
    return user.get_full_name() or user.get_username()


class IncidentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Incident]
):
    serializer_class = IncidentSerializer

    def get_queryset(self) -> QuerySet[Incident]:
        queryset = Incident.objects.select_related("monitor").prefetch_related("events")
        wanted = self.request.query_params.get("status")
        if wanted == "open":
            return queryset.open()
        if wanted:
            if wanted not in Incident.Status.values:
                raise serializers.ValidationError(
                    {"status": f"must be open or one of {', '.join(Incident.Status.values)}"}
                )
            return queryset.filter(status=wanted)
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="open, triggered, acknowledged or resolved")
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=None,
        responses={
            200: IncidentSerializer,
            409: OpenApiResponse(description="the incident is already resolved"),
        },
    )
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        incident = self.get_object()
        if incident.status == Incident.Status.RESOLVED:
            return conflict("the incident is already resolved")
        services.acknowledge(incident.pk, actor_of(request), via="API")
        return self.fresh(incident.pk)

    @extend_schema(request=ResolveSerializer, responses=IncidentSerializer)
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        incident = self.get_object()
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.resolve(
            incident.pk, actor_of(request), note=body.validated_data["note"], via="API"
        )
        return self.fresh(incident.pk)

    @extend_schema(request=NoteSerializer, responses={201: IncidentEventSerializer})
    def notes(self, request: Request, pk: str | None = None) -> Response:
        incident = self.get_object()
        body = NoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        event = services.add_note(incident.pk, actor_of(request), body.validated_data["text"])
        return Response(IncidentEventSerializer(event).data, status=status.HTTP_201_CREATED)

    def fresh(self, pk: int) -> Response:
        return Response(IncidentSerializer(self.get_queryset().get(pk=pk)).data)


def conflict(message: str) -> Response:
    return Response({"status": [message]}, status=status.HTTP_409_CONFLICT)
