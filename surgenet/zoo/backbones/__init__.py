"""Backbone networks of the zoo: timm architectures configured as the authors trained them."""

from .architectures import ARCHITECTURES, architecture, create_network, is_timm_architecture
from .feature_maps import FeatureBackbone

__all__ = ["ARCHITECTURES", "FeatureBackbone", "architecture", "create_network", "is_timm_architecture"]
