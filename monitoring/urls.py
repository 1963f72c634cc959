"""Monitoring API routes, mounted under ``/api/``; ``/metrics`` is mounted at the root by jobadmin/urls.py."""

from django.urls import path

from monitoring import views

urlpatterns = [
    path("stats/", views.StatsView.as_view(), name="stats"),
    path("analytics/types/", views.AnalyticsTypesView.as_view(), name="analytics-types"),
    path("analytics/users/", views.AnalyticsUsersView.as_view(), name="analytics-users"),
    path("analytics/errors/", views.AnalyticsErrorsView.as_view(), name="analytics-errors"),
    path("analytics/trends/", views.AnalyticsTrendsView.as_view(), name="analytics-trends"),
    path("analytics/peak-hours/", views.AnalyticsPeakHoursView.as_view(), name="analytics-peak-hours"),
    path("metrics/", views.MetricsView.as_view(), name="metrics-series"),
    path("health/", views.HealthView.as_view(), name="health"),
    path("alerts/", views.AlertListView.as_view(), name="alert-list"),
    path(
        "alerts/<int:pk>/acknowledge/",
        views.AlertActionView.as_view(action_name="acknowledge"),
        name="alert-acknowledge",
    ),
    path("alerts/<int:pk>/resolve/", views.AlertActionView.as_view(action_name="resolve"), name="alert-resolve"),
    path("alert-rules/", views.AlertRuleListView.as_view(), name="alert-rule-list"),
    path("alert-rules/<int:pk>/", views.AlertRuleDetailView.as_view(), name="alert-rule-detail"),
]
