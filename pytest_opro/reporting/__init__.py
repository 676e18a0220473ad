"""What a run tells people: task outcomes (one enum, one pass/fail rule), the terminal summary,
the JSON and markdown reports, plots, the merge of sharded jobs' reports, and the
``python -m pytest_opro.reporting`` command.

May import: :mod:`pytest_opro.prompts`, :mod:`pytest_opro.opro`, :mod:`pytest_opro.models`,
:mod:`pytest_opro.errors`. Never pytest or plugin.
"""
