"""Pages of the host app and its two Livekeep endpoints (token, webhook)."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from . import livekeep
from .models import Media, Post, WebhookDelivery

log = logging.getLogger(__name__)


@require_GET
def feed(request):
    """The publications, newest first, each live with its recording (the original card)."""
    recordings = Media.objects.filter(is_live_recording=True)
    posts = (
        Post.objects.select_related("author")
        .prefetch_related(Prefetch("media_files", queryset=recordings))
        .all()[:50]
    )
    return render(request, "social/feed.html", {"posts": posts})


@login_required
@require_GET
def go_live(request):
    """The page that records a live with @livekeep/recorder, straight to Livekeep."""
    config = {
        "livekeepUrl": settings.LIVEKEEP_URL,
        "tokenUrl": request.build_absolute_uri("/livekeep/token/"),
        "username": request.user.get_username(),
    }
    return render(request, "social/live.html", {"livekeep_config": config})


@login_required
@never_cache
@require_GET
def livekeep_token(request):
    """A short-lived Livekeep token for the signed-in user (the recorder's `getToken`)."""
    token = livekeep.mint_token(request.user)
    return JsonResponse({"token": token, "expires_in": settings.LIVEKEEP_TOKEN_TTL})


@csrf_exempt
@require_POST
def livekeep_webhook(request):
    """Livekeep's events, verified with the Standard Webhooks library, applied once each."""
    try:
        event = Webhook(settings.LIVEKEEP_WEBHOOK_SECRET).verify(request.body, dict(request.headers))
    except WebhookVerificationError as err:
        log.warning("refused a webhook: %s", err)
        return JsonResponse({"error": str(err)}, status=401)
    webhook_id = request.headers["webhook-id"]
    with transaction.atomic():
        _, first_time = WebhookDelivery.objects.get_or_create(
            webhook_id=webhook_id, defaults={"event_type": event.get("type", "")}
        )
        if first_time:
            livekeep.apply_event(event)
    log.info("livekeep event %s %s%s", event.get("type"), webhook_id, "" if first_time else " (again)")
    return HttpResponse(status=204)


@staff_member_required
@require_POST
def delete_post(request, post_id):
    """Moderation: deletes the post on Livekeep (its `post.deleted` event deletes it here)."""
    post = get_object_or_404(Post, pk=post_id)
    if post.livekeep_post_id is None:
        post.delete()
    else:
        livekeep.delete_on_livekeep(post, request.user)
        messages.info(request, "Publication supprimée.")
    return redirect("feed")
