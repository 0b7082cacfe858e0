"""avdiar core: models and their weights.

    from core import load_pretrained, build_model
"""

from core.backbone import PyanNet
from core.powerset import Powerset
from core.pretrained import load_pretrained


def build_model(*args, **kwargs):
    """Build a model from scratch; see core.models.build_model."""
    from core.models import build_model as _build

    return _build(*args, **kwargs)


__all__ = ["PyanNet", "Powerset", "build_model", "load_pretrained"]
