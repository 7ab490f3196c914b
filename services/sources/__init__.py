"""Every way frames arrive, behind one interface: `FrameSource` (start, stop, status).

The composition root (services/system.py) builds the sources its settings name and starts and stops them; `/sources`
and `sightline sources` list each with its state and counters. Today: Frigate (or another NVR) events over MQTT
(`mqtt.FrigateSource`); streams, folders, uploads and the queue worker move here next (the sources issue).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class SourceStatus:
    """What a source is doing: its state, its counters, its last error, and how far behind it runs."""

    name: str
    kind: str
    state: str  # starting, running, reconnecting, stopped
    counters: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    lag_s: float | None = None  # from an item's own time to its storage, for the latest item


class FrameSource(ABC):
    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def status(self) -> SourceStatus: ...
