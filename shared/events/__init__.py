"""Event contracts shared by every service: envelope, payload models, and the registry."""

from .base import DomainEvent, EventMessage, RecordedEvent
from .catalog import registry
from .registry import EventContractError

__all__ = ["DomainEvent", "EventContractError", "EventMessage", "RecordedEvent", "registry"]
