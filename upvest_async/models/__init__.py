"""Typed response models (frozen ``attrs`` classes), converted by :mod:`upvest_async.converter`."""

from .common import Meta, OpenEnum, Page, SortOrder
from .portfolios import PortfoliosConfiguration
from .positions import Instrument, Position

__all__ = [
    "Instrument",
    "Meta",
    "OpenEnum",
    "Page",
    "PortfoliosConfiguration",
    "Position",
    "SortOrder",
]
