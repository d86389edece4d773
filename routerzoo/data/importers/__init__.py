"""Importers: turn published routing / evaluation data into a :class:`~routerzoo.data.dataset.RoutingDataset`.

Each format has one module here whose docstring documents its expected input (user docs:
``FORMATS[name].doc``). :data:`FORMATS` is the explicit registry; use
:func:`import_files` to read files of one format into a validated dataset::

    from routerzoo.data.importers import import_files
    ds = import_files(["eval_results/"], "mmlu-pro")

Every reader returns canonical tables (see :mod:`routerzoo.data.schema`) carrying private
``_file`` / ``_row`` columns, so that a bad record is reported as ``file, row N, field 'x': ...``
(:class:`~routerzoo.errors.DataError`). A cost that cannot be derived (no cost in the data and no
price for the model) raises :class:`~routerzoo.errors.UserError` naming the model and ``--prices``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from routerzoo.data.dataset import RoutingDataset, make_dataset
from routerzoo.data.importers import (
    alpaca_eval,
    long,
    mmlu_pro,
    pairwise,
    routellm,
    routerarena,
    routerbench,
    scores_json,
    serve_log,
)
from routerzoo.data.importers._common import ON_INVALID, ImportOptions, ImportResult, StructureError
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import DataError, UserError

__all__ = ["FORMATS", "ImportOptions", "ImportResult", "Importer", "get_format", "import_files", "read_files"]


@dataclass(frozen=True)
class Importer:
    """One input format.

    Attributes:
        name: the ``--format`` value.
        summary: one line for listings.
        read: ``read(paths, options) -> ImportResult``.
        module: the module implementing it; its docstring is the format's user documentation.
    """

    name: str
    summary: str
    read: Callable[[Sequence[Path], ImportOptions], ImportResult]
    module: ModuleType

    def __post_init__(self):
        # the instance's __doc__ is the format's documentation, so generic help code shows it
        object.__setattr__(self, "__doc__", self.doc)

    @property
    def doc(self) -> str:
        return (self.module.__doc__ or "").strip()


def _importer(module: ModuleType) -> Importer:
    return Importer(module.NAME, module.SUMMARY, module.read, module)


FORMATS: dict[str, Importer] = {
    imp.name: imp
    for imp in map(_importer, (mmlu_pro, routellm, routerarena, alpaca_eval, routerbench, long, scores_json,
                               pairwise, serve_log))
}


def get_format(fmt: str) -> Importer:
    """The importer for ``fmt``; UserError listing the formats when unknown."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise UserError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}") from None


def read_files(
    paths: Sequence[str | os.PathLike],
    fmt: str,
    *,
    prices: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    strict: bool = False,
    skip: frozenset = frozenset(),
) -> ImportResult:
    """Run format ``fmt``'s reader on ``paths`` and return its raw tables and provenance (not validated).

    ``strict`` makes unknown columns / fields errors; records ``(file, row)`` in ``skip`` are left out.
    """
    importer = get_format(fmt)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise UserError("no input files given")
    if prices is not None and not Path(prices).is_file():
        raise UserError(f"price file {prices} does not exist")
    options = ImportOptions(prices=prices, trust_pickle=trust_pickle, strict=strict, skip=frozenset(skip))
    try:
        return importer.read([Path(p) for p in paths], options)
    except UserError:
        raise
    except RecursionError:
        raise UserError("input nested too deeply to read") from None
    except MemoryError:
        raise UserError("not enough memory to read the input") from None


def import_files(
    paths: Sequence[str | os.PathLike],
    fmt: str,
    *,
    prices: str | os.PathLike | None = None,
    name: str | None = None,
    split: SplitSpec | None = None,
    trust_pickle: bool = False,
    strict: bool = False,
    on_invalid: str = "error",
    max_rejects: int = 1000,
) -> RoutingDataset:
    """Import the files of one format into a validated, split :class:`RoutingDataset` (not saved).

    Args:
        paths: input files or directories (walked for the format's files); several files become one
            dataset (e.g. all MMLU-Pro zips, or all RouteLLM CSVs).
        fmt: a key of :data:`FORMATS`.
        prices: a YAML / JSON price file (model -> USD per 1M input / output tokens), consulted
            before any default price list and genai-prices.
        name: dataset name (default: the format name).
        split: how to split prompts (default :class:`SplitSpec`).
        trust_pickle: allow ``.pkl`` input (unpickling runs code from the file); RouterBench only.
        strict: unknown columns / fields are errors instead of warnings.
        on_invalid: ``"error"`` (default) stops at the first invalid record; ``"skip"`` leaves
            invalid records out (a whole source record: e.g. every model's outcome of a wide row),
            lists them in ``dataset.rejects`` (file, row, field, reason; saved as ``rejects.csv``
            by the CLI) and counts them in the notes. Broken file structure (truncated or invalid
            JSON / CSV) is an error either way.
        max_rejects: with ``on_invalid="skip"``, more invalid records than this is an error.

    Raises:
        UserError: unknown format, missing file, or a cost that cannot be derived.
        DataError: bad input, naming file, row and field.
    """
    if on_invalid not in ON_INVALID:
        raise UserError(f"on_invalid must be one of {list(ON_INVALID)}, got {on_invalid!r}")
    rejects: list[dict] = []
    skip: set = set()
    while True:
        try:
            result = read_files(paths, fmt, prices=prices, trust_pickle=trust_pickle, strict=strict, skip=frozenset(skip))
            sources = [dict(s, format=fmt) for s in result.sources]
            notes = list(result.notes)
            if rejects:
                notes.append(f"skipped {len(rejects)} invalid record(s) (--on-invalid skip); see rejects.csv "
                             f"(first: {rejects[0]['file']}, row {rejects[0]['row']}: {rejects[0]['reason']})")
            dataset = make_dataset(
                result.outcomes,
                result.preferences,
                name=name or fmt,
                sources=sources,
                prices=result.prices,
                split=split,
                notes=notes,
            )
        except StructureError:
            raise
        except DataError as exc:
            key = (exc.file, exc.row)
            if on_invalid != "skip" or exc.file is None or exc.row is None or key in skip:
                raise
            if len(rejects) >= max_rejects:
                raise DataError(f"more than {max_rejects} invalid records; the last: {exc}") from None
            skip.add(key)
            rejects.append({"file": exc.file, "row": exc.row, "field": exc.field or "", "reason": exc.message})
            continue
        dataset.rejects = sorted(rejects, key=lambda r: (str(r["file"]), r["row"]))
        return dataset

