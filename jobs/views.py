"""The jobs API: thin views over selectors and services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from jobs import selectors, services
from jobs.models import Job
from jobs.serializers import JobDetailSerializer, JobEnqueueSerializer, JobSerializer


class JobViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    lookup_value_converter = "uuid"

    def get_queryset(self) -> Any:
        return selectors.job_visible_queryset(user=self.request.user).select_related("user")

    def get_serializer_class(self) -> Any:
        if self.action == "retrieve":
            return JobDetailSerializer
        return JobSerializer

    @extend_schema(request=JobEnqueueSerializer, responses={201: JobDetailSerializer})
    def create(self, request: Request) -> Response:
        serializer = JobEnqueueSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job: Job = services.job_enqueue(
            job_type=data["type"],
            params=data["params"],
            queue=data.get("queue"),
            priority=data.get("priority"),
            user=request.user,
            actor=request.user,
        )
        return Response(
            JobDetailSerializer(job, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED
        )


class TokenView(ObtainAuthToken):
    """``POST username, password`` → ``{"token": ...}`` for ``Authorization: Token <token>``."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"
