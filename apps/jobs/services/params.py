"""Job parameters: ``ARG`` and ``KEY=VALUE`` words, labels, and checks against
the job's signature."""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from collections.abc import Iterable
from typing import Any

from ..catalog import Job, all_jobs, get_job
from .errors import InvalidParams, UnknownJob


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """Return ``text`` as the JSON value it spells (``3``, ``true``, ``null``, ``"x"``)
    or, when it is not JSON, as the string itself."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_params(params: Iterable[str]) -> tuple[list[Any], dict[str, Any]]:
    """Split ``ARG`` and ``KEY=VALUE`` words into args and kwargs.

    A word is a keyword argument when the text before its first ``=`` is an
    identifier, so ``url=http://x/?a=b`` is ``url`` ↦ ``http://x/?a=b`` and ``a=b=c``
    is ``a`` ↦ ``b=c``; anything else is positional.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for word in params:
        key, sep, value = word.partition("=")
        if sep and key.isidentifier():
            kwargs[key] = parse_value(value)
        else:
            args.append(parse_value(word))
    return args, kwargs


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def call_label(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """Return ``name(arg, k=v)``: the job with its normalized parameters."""
    parts = [_literal(a) for a in args]
    parts += [f"{k}={_literal(kwargs[k])}" for k in sorted(kwargs)]
    return f"{name}({', '.join(parts)})"


def lookup(name: str) -> Job:
    """Return the job ``name``; JobError naming the closest known jobs otherwise."""
    try:
        return get_job(name)
    except KeyError:
        names = [j.name for j in all_jobs()]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownJob(
            f"No job named {name!r}; {hint}`jobs list` shows the {len(names)} known jobs."
        ) from None


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits ``annotation`` as far as plain types can tell.

    ``true`` is no int here although ``bool`` subclasses ``int`` (``interval_ms=true``
    is a mistake, not 1); an int is a float; annotations other than plain classes,
    unions of them and their generic forms (``list[str]`` checks ``list``) accept all.
    """
    if annotation in (inspect.Parameter.empty, Any):
        return True
    if value is None and annotation is type(None):
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (
        typing.Union,
    ):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    if not isinstance(origin, type):
        return True
    if isinstance(value, bool) and origin is not bool:
        return origin is object
    if origin is float and isinstance(value, int):
        return True
    return isinstance(value, origin)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def signature_of(job: Job) -> inspect.Signature:
    """Return the parameters ``job`` takes (annotations resolved, no return type)."""
    return inspect.signature(job.func, eval_str=True).replace(
        return_annotation=inspect.Signature.empty
    )


def params_problem(job: Job, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Return why ``job`` cannot be called with these parameters, or None if it can.

    The message names the parameters the job takes, e.g. ``log-test takes
    (message: str = 'log-test')``.
    """
    sig = signature_of(job)
    takes = f"{job.name} takes {sig}" if sig.parameters else f"{job.name} takes none"
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        return f"{exc}; {takes}"
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind is param.VAR_POSITIONAL:
            values = list(value)
        elif param.kind is param.VAR_KEYWORD:
            values = list(value.values())
        else:
            values = [value]
        for one in values:
            if not _accepts(param.annotation, one):
                return (
                    f"{name}={_literal(one)} is not {_type_name(param.annotation)}; "
                    f"{takes}"
                )
    if job.check is not None:
        try:
            job.check(*args, **kwargs)
        except ValueError as exc:
            return str(exc).rstrip(".")
    return None


def check_params(job: Job, args: list[Any], kwargs: dict[str, Any]) -> None:
    """InvalidParams unless ``job`` can be called with these parameters."""
    problem = params_problem(job, args, kwargs)
    if problem:
        raise InvalidParams(
            f"{call_label(job.name, args, kwargs)} cannot run: {problem}. "
            "`jobs list` describes each job."
        )
