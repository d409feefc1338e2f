"""Backbone networks of the zoo: timm architectures configured as the authors trained them."""

from .architectures import ARCHITECTURES, create_network
from .features import FeatureBackbone

__all__ = ["ARCHITECTURES", "FeatureBackbone", "create_network"]
