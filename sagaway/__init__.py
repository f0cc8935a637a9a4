"""sagaway: durable sagas with automatic compensation, resilience and SLO monitoring."""

from sagaway.resilience import Permanent, Retry

__version__ = "0.1.0"
__all__ = ["Permanent", "Retry", "__version__"]
