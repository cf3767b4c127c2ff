"""S3 event notifications (issue 15): ``POST /-/events`` on the ``[server]`` listener turns
MinIO webhook, Ceph RGW HTTP push and Amazon S3 (through SNS) deliveries into work for the
torrent service, so torrents are ready seconds after an upload and gone seconds after a
delete; the scanner stays as the slow safety net.

Pure core: :mod:`.payload` (bytes -> frozen dataclasses or :class:`EventError`),
:mod:`.auth` (the token check), :mod:`.ordering` (per-key sequencers, bounded),
:mod:`.pending` (the bounded, coalescing queue). Shell: :mod:`.endpoint` (the trio handler
and its workers, effects through the :class:`~seeder.torrent.service.TorrentService`).
"""

from seeder.events.auth import AuthResult, check_auth
from seeder.events.ordering import Sequencers, sequencer_key
from seeder.events.payload import (
    Delivery,
    EventError,
    ObjectEvent,
    SubscriptionConfirmation,
    parse_delivery,
)
from seeder.events.pending import Pending

__all__ = [
    "AuthResult",
    "Delivery",
    "EventError",
    "ObjectEvent",
    "Pending",
    "Sequencers",
    "SubscriptionConfirmation",
    "check_auth",
    "parse_delivery",
    "sequencer_key",
]
