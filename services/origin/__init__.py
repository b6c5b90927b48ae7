"""Under-storage backends behind one seam; `open_origin` picks one by URI scheme."""

from reservoir.origin.base import ObjectInfo, Origin
from reservoir.origin.open import CREDENTIAL_OPTIONS, SECRET_OPTIONS, open_origin

__all__ = ["CREDENTIAL_OPTIONS", "SECRET_OPTIONS", "ObjectInfo", "Origin", "open_origin"]
