"""Model references in ``user_config`` and loading them from the MLflow registry.

A reference names one registered version of the retrieval or ranking model:

* ``"7"`` or ``"feedray-two-tower@7"``: that version, pinned;
* ``"alias:champion"`` / ``"alias:challenger"``: whatever the alias points at *when the
  replica (re)loads*. Replicas only reload when their ``user_config`` text changes, so
  promotion and rollback go through ``feedray serve --refresh-models`` (``deploy.resolve_aliases``),
  which writes the concrete versions into the config and reconfigures replicas in place.

Weights come from ``app.registry.load_version`` (the artifact the training job logged);
the retrieval index comes from the ``index/`` folder the index job logged beside the
same version (``train.index``), so a replica always searches vectors of the very
content tower whose user tower it runs.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def resolve_model_ref(ref: str, model_name: str, settings: Any | None = None) -> str:
    """The version number behind ``ref`` (see the module docstring); LookupError if absent."""
    ref = str(ref)
    if ref.startswith("alias:"):
        from app.registry import get_version, tracking_uri

        alias = ref.removeprefix("alias:")
        version = get_version(tracking_uri(settings), model_name, alias)
        if version is None:
            raise LookupError(f"model {model_name!r} has no alias {alias!r} in the registry")
        return str(version.version)
    version = ref.rsplit("@", 1)[1] if "@" in ref else ref
    if not version.isdigit():
        raise ValueError(
            f"bad model reference {ref!r}: expected a version, name@version or alias:<alias>"
        )
    return version


def resolve_arms(refs: dict[str, str], model_name: str, settings: Any) -> dict[str, str]:
    """Arm -> version. A canary whose alias does not exist yet serves the champion (the
    ``champion`` arm's, else ``alias:champion``'s version)."""
    out: dict[str, str] = {}
    for arm, ref in refs.items():
        try:
            out[arm] = resolve_model_ref(ref, model_name, settings)
        except LookupError:
            if arm == "champion":
                raise
            log.warning(
                "%s: %s has no version; the %s arm serves the champion", model_name, ref, arm
            )
    missing = [arm for arm in refs if arm not in out]
    if missing:
        champion = out.get("champion") or resolve_model_ref("alias:champion", model_name, settings)
        for arm in missing:
            out[arm] = champion
    return out


def load_model(settings: Any, model_name: str, version: str):
    """(model in eval mode, version string) of ``model_name`` version ``version``."""
    from app import registry

    model, mv = registry.load_version(registry.tracking_uri(settings), model_name, version)
    return model, str(mv.version)


def load_logged_index(settings: Any, model_name: str, version: str):
    """The FAISS ``FeedIndex`` logged with that version, or None when no index job ran for it."""
    from app import registry

    try:
        return registry.load_index(registry.tracking_uri(settings), model_name, version)
    except Exception as error:  # noqa: BLE001 - absent artifact: mlflow raises its own types
        log.warning(
            "no index logged for %s v%s (%s); building one from the catalogue",
            model_name,
            version,
            error,
        )
        return None
