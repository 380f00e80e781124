"""One command-line grammar (issue 14, item 6): how a command names a study and a subject, and the old
spellings that keep working.

* A study is ``--study STUDY`` in every command that reads one (STUDY: a study folder, or the id of a
  study in the store), always with the metavar and help text of :data:`StudyOpt`. A command whose
  object is a study declares ``study: StudyArg``: the positional STUDY, its short form, and ``--study``.
* A subject is ``--subject SUBJECT`` (:data:`SubjectOpt`); a command whose object is a subject declares
  ``subject: SubjectArg``: the positional SUBJECT and ``--subject``.
* Both forms given: the same value is fine, different values are one usage error naming both (exit 2).

:class:`App` (the ``cartlab`` application's class) gives every command declared with a
:func:`study_argument` / :func:`subject_argument` parameter its long form: the command's signature gets
the option as a second, hidden-from-the-code parameter, and the two are merged before the command runs.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from pathlib import Path
from typing import Annotated, ClassVar, Optional, get_args, get_origin

import typer
import typer.core

STUDY_HELP = "A study folder, or the id of a study in the store (cartlab list)."
SUBJECT_HELP = "A subject id (cartlab list --subjects)."

#: the one long form of each object: the option every command takes it as
StudyOpt = Annotated[Optional[str], typer.Option("--study", metavar="STUDY", help=STUDY_HELP)]
SubjectOpt = Annotated[Optional[str], typer.Option("--subject", metavar="SUBJECT", help=SUBJECT_HELP)]
StudyDirAlias = Annotated[Optional[Path], typer.Option("--study-dir", hidden=True, help="Old name of --study FOLDER.")]

#: id(ArgumentInfo) of a positional short form -> (its long form's annotation, option name, metavar, noun)
_SHORT_FORMS: dict[int, tuple[object, str, str, str]] = {}


def _short_form(metavar: str, long: str, long_ann, noun: str, help: str | None):
    info = typer.Argument(metavar=metavar, help=help or f"The same as {long} {metavar}.")
    _SHORT_FORMS[id(info)] = (long_ann, long, metavar, noun)
    return Annotated[Optional[str], info]


def study_argument(help: str | None = None, option_help: str | None = None):
    """The positional STUDY of a command whose object is a study, with ``--study STUDY`` as its long form
    (``help``: the argument's own line in --help; the option's is :data:`STUDY_HELP` unless
    ``option_help`` says what this command takes, e.g. ``delete``: a stored id only)."""
    long_ann = StudyOpt if option_help is None else Annotated[
        Optional[str], typer.Option("--study", metavar="STUDY", help=option_help)]
    return _short_form("STUDY", "--study", long_ann, "study", help)


def subject_argument(help: str | None = None):
    """The positional SUBJECT of a command whose object is a subject, with ``--subject SUBJECT``."""
    return _short_form("SUBJECT", "--subject", SubjectOpt, "subject", help)


StudyArg = study_argument(STUDY_HELP + " The same as --study STUDY.")
SubjectArg = subject_argument(SUBJECT_HELP + " The same as --subject SUBJECT.")


def one_value(short_name: str, short, long_name: str, long, noun: str):
    """The value given as ``short`` (the positional) or ``long`` (its option); both with the same value
    is fine, with different values a usage error naming both (exit 2)."""
    if short is None or long is None:
        return short if short is not None else long
    same = _same_study(str(short), str(long)) if noun == "study" else short == long
    if not same:
        from cartlab.errors import InputError

        raise InputError(f"two different {noun} values given: {short_name} {short!r} and {long_name} {long!r}",
                         hint=f"give the {noun} once, as {short_name} or as {long_name} {short_name}")
    return short


def _same_study(a: str, b: str) -> bool:
    """Two spellings of one study: the same text (normalised), or two paths to one folder (relative and
    absolute, through a symlink: review 41 diff2 6)."""
    if os.path.normpath(a) == os.path.normpath(b):
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def with_grammar(func):
    """``func`` as a command whose positional short forms (:func:`study_argument`,
    :func:`subject_argument`) also take their long form (``--study``, ``--subject``); ``func`` itself when
    it declares none. A required short form becomes "the argument or the option"."""
    sig = inspect.signature(func, eval_str=True)
    forms, params = [], []
    for p in sig.parameters.values():
        info = next((m for m in get_args(p.annotation)[1:] if id(m) in _SHORT_FORMS),
                    None) if get_origin(p.annotation) is Annotated else None
        if info is None:  # after a long form every parameter is keyword-only (typer passes them so), in order
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if forms else p)
            continue
        long_ann, long, metavar, noun = _SHORT_FORMS[id(info)]
        long_name = f"{p.name}__long"
        forms.append((p.name, long_name, long, metavar, noun, p.default is inspect.Parameter.empty))
        params.append(p.replace(default=None, kind=inspect.Parameter.KEYWORD_ONLY))
        params.append(inspect.Parameter(long_name, inspect.Parameter.KEYWORD_ONLY, annotation=long_ann, default=None))
    if not forms:
        return func

    @functools.wraps(func)
    def command(*args, **kwargs):
        for name, long_name, long, metavar, noun, needed in forms:
            value = one_value(metavar, kwargs.get(name), long, kwargs.pop(long_name, None), noun)
            if value is None and needed:
                from cartlab.errors import InputError

                raise InputError(f"give the {noun}: {metavar} or {long} {metavar}")
            kwargs[name] = value
        return func(*args, **kwargs)

    command.__signature__ = sig.replace(parameters=params)
    #: the short forms that are needed (as the argument or the option): the usage line shows them as such
    command.cartlab_needed = frozenset(f[0] for f in forms if f[5])
    return command


def bundled(cls: type, params: tuple) -> callable:
    """A decorator for commands that share a group of parameters: the command declares one parameter
    annotated ``cls``; it gets ``params`` (``(name, annotation, default)``: each its own option or
    argument in --help, in that place) instead, and receives them as one ``cls(**those)``.
    (:func:`cartlab.cli.interop.reader_options`, the protocol commands' subject selection.)"""
    names = [name for name, _, _ in params]

    def decorator(func):
        sig = inspect.signature(func, eval_str=True)
        out: list = []
        seen = None
        for p in sig.parameters.values():
            if p.annotation is cls:
                seen = p.name
                out += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=default)
                        for name, ann, default in params]
            else:  # after them every parameter is keyword-only (typer passes them so), in order
                out.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if seen else p)
        if seen is None:
            raise TypeError(f"{func.__name__} declares no parameter annotated {cls.__name__}")

        @functools.wraps(func)
        def command(*args, **kwargs):
            kwargs[seen] = cls(**{n: kwargs.pop(n) for n in names if n in kwargs})
            return func(*args, **kwargs)

        command.__signature__ = sig.replace(parameters=out)
        return command

    return decorator


class App(typer.Typer):
    """``typer.Typer`` whose commands follow the grammar (:func:`with_grammar`): a command gets ``--study``
    or ``--subject`` by declaring its positional short form, nothing else."""

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", GrammarCommand)
        register = super().command(*args, **kwargs)

        def decorator(func):
            register(with_grammar(func))
            return func

        return decorator


# ------------------------------------------------------------------------------------------------
# old spellings: hidden aliases that keep working, each with a one-line deprecation warning


def deprecated(old: str, new: str) -> None:
    """The one-line warning (stderr) printed when an old spelling is used."""
    from cartlab.cli.base import err

    err.print(f"  [yellow]![/] {old} is deprecated: use {new}", highlight=False, soft_wrap=True)


#: click's usage error (typer may vendor click, so found through a public typer class): exit 2
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
#: the grammar's one-value options: given twice with different values is an error, not the last one
_ONE_VALUE = ("--study", "--subject")


#: a value and its unit written as one token ("54umol/L", "54 umol/L"), for an option that takes VALUE UNIT
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s.+-].*?)\s*$")


def _split_quantities(args: list[str], takes_value: dict[str, int]) -> list[str]:
    """``args`` with a VALUE UNIT option (nargs 2, e.g. ``dose --creatinine``) given as one token --
    ``--creatinine 54umol/L``, ``--creatinine '54 umol/L'``, ``--creatinine=54umol/L`` -- split into its
    two tokens, as ``--weight 52kg`` is written (review 47 F1; cartlab convention). The two-token form is
    unchanged."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return out + list(args[i:])
        name, eq, value = a.partition("=")
        if a.startswith("--") and takes_value.get(name) == 2:
            token = value if eq else (args[i + 1] if i + 1 < len(args) else None)
            m = _QUANTITY.match(token) if token is not None else None
            if m:
                out += [name, m.group(1), m.group(2)]
                i += 1 if eq else 2
                continue
        out.append(a)
        i += 1
    return out


def _set_with_spaces(args: list[str], ctx) -> None:
    """``--set icaht.duration = longest_run`` (spaces around ``=``): click reads ``icaht.duration`` as the
    option and the rest as extra arguments; say how to write it instead (review 47 F10)."""
    for i, a in enumerate(args[:-2]):
        if a == "--":
            return
        if a == "--set" and "=" not in args[i + 1] and args[i + 2].startswith("="):
            typed = args[i + 1:i + 3] if args[i + 2] != "=" else args[i + 1:i + 4]
            value = args[i + 2][1:] if args[i + 2] != "=" else (args[i + 3] if i + 3 < len(args) else "VALUE")
            raise _UsageError(f"--set {' '.join(typed)}: write --set ENGINE.OPTION=VALUE without spaces, "
                              f"e.g. --set {args[i + 1]}={value}", ctx=ctx)


class GrammarCommand(typer.core.TyperCommand):
    """A command of :class:`App`: ``--study`` or ``--subject`` given twice with different values is one
    usage error naming both (click would take the last; review 41 diff2 13), as the positional form and
    the option are. A VALUE UNIT option given as one token is split (:func:`_split_quantities`), and
    ``--set`` with spaces around ``=`` is one clear usage error (:func:`_set_with_spaces`)."""

    def _takes_value(self, ctx) -> dict[str, int]:
        return {name: p.nargs for p in self.get_params(ctx)
                if p.param_type_name == "option" and not p.is_flag for name in (*p.opts, *p.secondary_opts)}

    def parse_args(self, ctx, args):
        takes_value = self._takes_value(ctx)
        args = _split_quantities(list(args), takes_value)
        if "--set" in takes_value:
            _set_with_spaces(args, ctx)
        seen: dict[str, str] = {}
        i = 0
        while i < len(args):
            a = args[i]
            if a == "--":
                break
            name, eq, value = a.partition("=")
            if name in _ONE_VALUE and takes_value.get(name) == 1:
                value = value if eq else (args[i + 1] if i + 1 < len(args) else None)
                if value is not None and name in seen and seen[name] != value:
                    if not (name == "--study" and _same_study(seen[name], value)):
                        noun = name[2:]
                        raise _UsageError(f"two different {noun} values given: {name} {seen[name]!r} and "
                                          f"{name} {value!r}; give the {noun} once", ctx=ctx)
                if value is not None:
                    seen.setdefault(name, value)
            # an option's value is never read as an option name (a column called "--time" ...)
            i += 1 + (takes_value.get(name, 0) if not eq and a.startswith("-") else 0)
        return super().parse_args(ctx, args)


class AliasCommand(GrammarCommand):
    """A command whose old option names (``aliases``: old -> new) still work. They are not options of
    the command (so not in --help): each is rewritten to its new name before parsing, with a
    deprecation warning; ``spelled(ctx, new)`` gives the spelling the user typed, for messages.
    ``refused`` (old -> message): old names that are an error now (their meaning changed)."""

    aliases: ClassVar[dict[str, str]] = {}
    #: old names that keep working without a warning (a published contract uses them)
    silent: ClassVar[frozenset[str]] = frozenset()
    refused: ClassVar[dict[str, str]] = {}

    def parse_args(self, ctx, args):
        takes_value = self._takes_value(ctx)
        takes_value.update({old: takes_value.get(new, 0) for old, new in self.aliases.items()})
        takes_value.update({old: 1 for old in self.refused if old not in takes_value})
        used = ctx.meta.setdefault("cartlab_old_spellings", {})
        args, i = list(args), 0
        while i < len(args):
            a = args[i]
            if a == "--":
                break
            name, eq, value = a.partition("=")
            if name in self.refused:
                raise _UsageError(self.refused[name], ctx=ctx)
            if name in self.aliases:
                new = self.aliases[name]
                args[i] = new + eq + value
                used[new] = name
                if name not in self.silent:
                    deprecated(name, new)
            # an option's value is never read as an option name (a column called "--time" ...)
            i += 1 + (takes_value.get(name, 0) if not eq and a.startswith("-") else 0)
        return super().parse_args(ctx, args)


def aliased(aliases: dict[str, str], base: type = AliasCommand, silent=(), refused=None) -> type:
    """A command class whose old option names ``aliases`` (old -> new) are hidden, deprecated aliases
    (``silent``: those of them that stay without a warning; ``refused``: old name -> the usage error it
    gives now)."""
    return type(f"{base.__name__}_aliased", (base,), {"aliases": {**base.aliases, **aliases},
                                                       "silent": base.silent | frozenset(silent),
                                                       "refused": {**base.refused, **(refused or {})}})


def spelled(ctx, new: str) -> str:
    """The option name as the user typed it: an old alias of ``new``, or ``new``."""
    return (ctx.meta.get("cartlab_old_spellings") or {}).get(new, new) if ctx is not None else new
