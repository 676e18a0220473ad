"""One sandboxed Jinja2 environment for prompt and meta-prompt templates.

Templates are source the user (or this package) wrote; everything that comes from examples or from a
model is passed in as a *variable* and is never parsed as template source.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pytest_opro.errors import TemplateError


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    """The shared environment: sandboxed, StrictUndefined, no autoescape, keeps trailing newlines."""
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=256)
def _parse(source: str) -> jinja2.Template:
    return environment().from_string(source)


def compile_template(source: str, origin: str) -> jinja2.Template:
    """Parse template `source` (once per source); `origin` names it in error messages."""
    try:
        return _parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{origin}: template syntax error on line {exc.lineno}: {exc.message}") from None


def render(source: str, variables: dict[str, Any], origin: str) -> str:
    """Render `source` with `variables`; undefined names fail with the name and `origin`."""
    template = compile_template(source, origin)
    try:
        return template.render(**variables)
    except jinja2.UndefinedError as exc:
        known = ", ".join(sorted(variables)) or "none"
        raise TemplateError(f"{origin}: {exc.message} (variables available: {known})") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{origin}: {exc}") from None


def variables_used(source: str, origin: str) -> set[str]:
    """Names a template reads, e.g. to know whether it has an `{{ instruction }}` slot."""
    from jinja2 import meta

    try:
        return set(meta.find_undeclared_variables(environment().parse(source)))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{origin}: template syntax error on line {exc.lineno}: {exc.message}") from None
