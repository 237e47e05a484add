"""The trigger base classes' old home: they moved to :mod:`airlock.sdk`, and this alias keeps plugins
written against it working."""

from airlock.sdk.triggers import *  # noqa: F403
from airlock.sdk.triggers import __all__ as __all__
