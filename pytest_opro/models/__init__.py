"""Everything that talks to a model: settings, usage and budgets, the client, retries, prices,
the litellm bridge, the direct OpenAI-compatible HTTP transport, the response cache (its interface,
SQLite and Redis), litellm's Router with the pacing of deployments (shared through Redis) and the
embedded local model.

May import: :mod:`pytest_opro.errors` and :mod:`pytest_opro.opro` (for the Completer protocol it
implements). Never pytest, prompts, plugin or reporting.
"""
