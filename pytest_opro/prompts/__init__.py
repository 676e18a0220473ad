"""Prompt tasks: PromptTask, example loading and splits, metrics, answer extraction, the
instruction problem the optimizer runs on, ``optimize()``, its Result, the committed artifact and
the regression gate.

May import: :mod:`pytest_opro.errors`, :mod:`pytest_opro.opro` and :mod:`pytest_opro.models`.
Never pytest, plugin or reporting.
"""
