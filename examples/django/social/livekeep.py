"""The whole Livekeep integration of this app: tokens out, events in, one moderation call.

- `mint_token` gives a signed-in user a short-lived JWT that Livekeep accepts
  (`livekeep serve --auth jwt --auth-jwt-secret …`): `sub` is this app's user id, so the
  same person is the same Livekeep user whatever their display name becomes.
- `apply_event` writes what a verified webhook reports into this app's own Post and Media.
- `delete_on_livekeep` removes a post and its recording on Livekeep with an admin token;
  Livekeep answers with a `post.deleted` event, which deletes the row here.
"""

import logging
import time
import urllib.error
import urllib.request

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.dateparse import parse_datetime

from .models import Media, Post

log = logging.getLogger(__name__)

FINAL_STATUSES = {"ended", "interrupted"}


def mint_token(user, *, admin=False):
    """A Livekeep bearer token for `user`, valid for LIVEKEEP_TOKEN_TTL seconds."""
    now = int(time.time())
    claims = {
        "sub": str(user.pk),
        "name": user.get_username(),
        "iss": settings.LIVEKEEP_JWT_ISSUER,
        "aud": settings.LIVEKEEP_JWT_AUDIENCE,
        "iat": now,
        "exp": now + settings.LIVEKEEP_TOKEN_TTL,
    }
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, settings.LIVEKEEP_JWT_SECRET, algorithm="HS256")


def _author(user_json):
    """This app's user behind a Livekeep user: its `external_id` is the `sub` we minted."""
    external_id = (user_json or {}).get("external_id")
    if not external_id:
        return None
    return get_user_model().objects.filter(pk=external_id).first()


def _upsert_post(post_json):
    author = _author(post_json.get("author"))
    if author is None:
        log.warning("livekeep post %s has no author of this app; skipped", post_json.get("id"))
        return None
    fields = {
        "author": author,
        "content": post_json.get("content", ""),
        "is_live": bool(post_json.get("is_live")),
        "live_status": post_json.get("live_status") or "",
        "live_started_at": parse_datetime(post_json["started_at"]) if post_json.get("started_at") else None,
        "live_ended_at": parse_datetime(post_json["ended_at"]) if post_json.get("ended_at") else None,
        "viewer_count": post_json.get("viewer_count") or 0,
        "peak_viewers": post_json.get("peak_viewers") or 0,
        "chat_message_count": post_json.get("chat_message_count") or 0,
        "created_at": parse_datetime(post_json["created_at"]),
    }
    post, created = Post.objects.get_or_create(livekeep_post_id=post_json["id"], defaults=fields)
    if not created:
        # Events may arrive out of order (a `live.started` retried after `live.ended`): a
        # live that ended never goes back to "live".
        if post.live_status in FINAL_STATUSES and fields["live_status"] not in FINAL_STATUSES:
            return post
        for name, value in fields.items():
            setattr(post, name, value)
        post.save()
    return post


def _upsert_media(media_json, post):
    user = _author(media_json.get("user")) or (post.author if post else None)
    if user is None:
        return None
    fields = {
        "user": user,
        "title": media_json["title"],
        "description": media_json.get("description") or "",
        "file_type": media_json.get("file_type") or "video",
        "file_url": media_json["file_url"],
        "mime_type": media_json["mime_type"],
        "duration": media_json["duration"],
        "size": media_json["size"],
        "original_sha256": media_json.get("original_sha256") or "",
        "poster_url": media_json.get("poster_url") or "",
        "is_live_recording": bool(media_json.get("is_live_recording")),
        "live_post": post,
        "created_at": parse_datetime(media_json["created_at"]),
    }
    if post is None:
        # A refinalized file: keep the link we already have.
        fields.pop("live_post")
    media, _ = Media.objects.update_or_create(livekeep_media_id=media_json["id"], defaults=fields)
    return media


def apply_event(event):
    """Writes one verified Livekeep event into this app's tables (call it in a transaction)."""
    kind = event.get("type")
    data = event.get("data") or {}
    if kind == "live.started":
        _upsert_post(data["post"])
    elif kind in ("live.ended", "live.interrupted"):
        post = _upsert_post(data["post"])
        if data.get("media") and post is not None:
            _upsert_media(data["media"], post)
    elif kind == "recording.refinalized":
        _upsert_media(data["media"], None)
    elif kind == "post.deleted":
        Post.objects.filter(livekeep_post_id=data["post_id"]).delete()
    else:
        # Newer Livekeep versions may send more event types: accept and ignore them.
        log.info("ignoring livekeep event %s", kind)


def delete_on_livekeep(post, moderator):
    """Deletes a post and its media on Livekeep as `moderator` (a staff user: role admin)."""
    request = urllib.request.Request(
        f"{settings.LIVEKEEP_URL}/api/posts/{post.livekeep_post_id}/",
        method="DELETE",
        headers={"Authorization": f"Bearer {mint_token(moderator, admin=True)}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return 404
        body = err.read().decode(errors="replace")
        raise RuntimeError(f"Livekeep refused the deletion: {err.code} {body}") from err
