"""Image provenance: how a container's image was named, where it came from, how old it is, how it runs.

`ImageChecker.facts` gives the `shipper.image` object of a container start or an image
pull; the `image_config` Sigma rules judge it. An image's config never changes, so
`inspect` answers are kept by image id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors

from .timefmt import iso_time, parse_time

DEFAULT_REGISTRY = "docker.io"


def is_pinned(reference: str) -> bool:
    """Referenced by content (`name@sha256:...`, or the image id itself), so it cannot change under the name."""
    return "@sha256:" in reference or reference.startswith("sha256:")


def registry_of(reference: str) -> str | None:
    """The registry a reference pulls from, by Docker's rule: a first component with '.' or ':' or
    'localhost' is a registry, anything else is Docker Hub. None for a bare image id."""
    if reference.startswith("sha256:"):
        return None
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def registry_allowed(registry: str | None, allowed: list[str]) -> bool:
    if not allowed or registry is None:
        return True
    aliases = {DEFAULT_REGISTRY, "index.docker.io", "registry-1.docker.io"}
    return any(registry == a or (registry in aliases and a in aliases) for a in allowed)


def _runs_as_root(user: str) -> bool:
    return user.split(":")[0] in ("", "root", "0")


@dataclass(frozen=True)
class ImagePolicy:
    allowed_registries: tuple[str, ...] = ()
    max_age_days: float = 365.0


class ImageChecker:
    def __init__(self, client: docker.DockerClient, policy: ImagePolicy = ImagePolicy()):
        self.client = client
        self.policy = policy
        self._inspected: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def inspect(self, image: str) -> dict[str, Any] | None:
        with self._lock:
            known = self._inspected.get(image)
        if known is not None:
            return known
        try:
            attrs = self.client.api.inspect_image(image)
        except docker.errors.APIError:  # gone already, or a name the engine cannot resolve
            return None
        with self._lock:
            if len(self._inspected) > 4096:
                self._inspected.clear()
            self._inspected[attrs["Id"]] = attrs
        return attrs

    def facts(self, reference: str, image_id: str | None = None, now: datetime | None = None) -> dict[str, Any]:
        """`shipper.image` for an image named `reference` (as the container or the pull named it)."""
        attrs = self.inspect(image_id or reference)
        return image_facts(reference, attrs, self.policy, now or datetime.now(UTC))


def image_facts(reference: str, attrs: dict[str, Any] | None, policy: ImagePolicy, now: datetime) -> dict[str, Any]:
    """The provenance facts of one image; `attrs` is its inspect answer (None when it is gone)."""
    digests = list((attrs or {}).get("RepoDigests") or [])
    # a bare id says nothing of origin: the image's own repo names do
    names = digests + list((attrs or {}).get("RepoTags") or [])
    origin = reference if not reference.startswith("sha256:") else next(iter(names), reference)
    registry = registry_of(origin)
    facts: dict[str, Any] = {
        "reference": reference,
        "pinned": is_pinned(reference),
        "registry": registry,
        "registry_allowed": registry_allowed(registry, list(policy.allowed_registries)),
        "repo_digests": digests,
    }
    if attrs is None:
        return facts
    config = attrs.get("Config") or {}
    created = parse_time(attrs.get("Created") or "")
    health = (config.get("Healthcheck") or {}).get("Test") or []
    facts.update(
        id=attrs.get("Id"),
        user=config.get("User") or "root",
        runs_as_root=_runs_as_root(config.get("User") or ""),
        healthcheck=bool(health) and health[0] != "NONE",
    )
    if created is not None:
        age = (now.timestamp() - created) / 86400
        facts.update(created=iso_time(created), age_days=round(age, 1),
                     outdated=age > policy.max_age_days)
    return facts
