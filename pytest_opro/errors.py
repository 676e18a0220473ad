"""Errors pytest-opro raises on purpose: each carries one line a user can act on."""

from __future__ import annotations


class OproError(Exception):
    """Base class: the message is complete and is shown without a traceback."""


class ConfigError(OproError):
    """A setting, option or task field has a value that cannot work."""


class ExampleError(OproError):
    """An example file or example set is unusable (message names file and line)."""


class TemplateError(OproError):
    """A prompt or meta-prompt template does not parse or uses an unknown variable."""


class MetricError(OproError):
    """An unknown metric or a metric that returned something other than a score."""


class ProviderError(OproError):
    """A model call failed for good (after retries) or cannot be made at all."""


class FatalProviderError(ProviderError):
    """A ProviderError every further call would repeat (bad key, unknown model): stops a batch at once."""


class BudgetExhausted(OproError):
    """A call, token or dollar budget was reached; the run stops with what it has."""


class ArtifactError(OproError):
    """A committed artifact file is missing, corrupt or from a newer schema."""
