"""The recorder's spool: finished files wait here until the customer's storage
(common.storage) confirms them. See docs/recorder.md."""

from recorder.storage.spool import Spool, SpoolItem, backoff_delay

__all__ = ["Spool", "SpoolItem", "backoff_delay"]
