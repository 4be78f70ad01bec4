"""URLs of the host app: Django's own pages plus the two Livekeep endpoints."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from social import views

urlpatterns = [
    path("", views.feed, name="feed"),
    path("live/", views.go_live, name="go_live"),
    path("posts/<int:post_id>/delete/", views.delete_post, name="delete_post"),
    path("livekeep/token/", views.livekeep_token, name="livekeep_token"),
    path("livekeep/webhook/", views.livekeep_webhook, name="livekeep_webhook"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="social/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
