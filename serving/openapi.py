"""The OpenAPI document says which features ``POST /score`` and ``/score/batch`` need.

The champion decides that, and it can change without a restart. So the ``features`` object
of both bodies is the component ``Features``, built from the champion's feature list: every
feature is a required number and no other name is allowed, exactly what the routes check.
:meth:`serving.main.ChurnApi.openapi` rebuilds the document when the champion changes.
Without a champion the component lists every feature the code defines (scoring then
answers 503 until one is promoted).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from core.features import FEATURES

FEATURES_COMPONENT = "Features"
_BODIES_WITH_FEATURES = ("ScoreRequest", "BatchRow")
_DESCRIPTIONS = {feature.name: feature.description for feature in FEATURES}


def features_schema(names: Sequence[str], version: str | None) -> dict[str, Any]:
    """The JSON Schema of a ``features`` object for a model using ``names``."""
    whose = f"champion model {version}" if version else "the code (no champion is loaded)"
    return {
        "title": FEATURES_COMPONENT,
        "description": f"Every feature of {whose}, each a finite number; no other names.",
        "type": "object",
        "properties": {
            name: {"type": "number", "description": _DESCRIPTIONS.get(name, name)} for name in names
        },
        "required": list(names),
        "additionalProperties": False,
    }


def with_champion_features(
    document: dict[str, Any], names: Sequence[str], version: str | None
) -> dict[str, Any]:
    """A copy of the OpenAPI ``document`` whose scoring bodies require the features
    ``names`` (of model ``version``; ``None`` without a champion)."""
    result = copy.deepcopy(document)
    schemas = result["components"]["schemas"]
    schemas[FEATURES_COMPONENT] = features_schema(names, version)
    for body in _BODIES_WITH_FEATURES:
        schemas[body]["properties"]["features"] = {
            "$ref": f"#/components/schemas/{FEATURES_COMPONENT}"
        }
    return result
