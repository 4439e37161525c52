"""How the CLI shows things: numbers, tables that fit the terminal, a study's progress."""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from harness.controller.placement import describe_placement
from harness.results.events import (
    EngineWaiting,
    Event,
    Note,
    OrphanFound,
    Pause,
    RunFinished,
    RunRecovered,
    RunStarted,
    SignalReceived,
    StudyAborted,
    StudyInterrupted,
    StudyStarted,
)
from harness.results.headline import PER_RUN
from harness.results.schema import RunRecord

console = Console(highlight=False)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)

#: the space between two columns of a table
GAP = "  "
#: how many cells of a column decide whether it holds numbers
ALIGN_SAMPLE = 1000


def missing(value: Any) -> bool:
    """Whether a value is unknown (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, spec: str = ".3g", unknown: str = "n/a") -> str:
    """A value as text: floats formatted by ``spec``, unknown values as ``unknown``."""
    if value is None:
        return unknown
    if isinstance(value, float):
        return unknown if math.isnan(value) else format(value, spec)
    return str(value)


def note(message: str) -> None:
    """Print a note for the user (markup in ``message`` is shown as written)."""
    console.print(f"[yellow]note:[/] {escape(message)}")


@dataclass(frozen=True)
class Col:
    """One column: the key of its value in a row, its header, how a value is written.

    ``left`` None aligns by content: numbers to the right, text to the left.
    """

    key: str
    header: str
    spec: str = ".3g"
    left: bool | None = None
    unknown: str = "n/a"

    def cell(self, row: Mapping[str, Any]) -> str:
        """This column's text in ``row``."""
        return fmt(row.get(self.key), self.spec, self.unknown)

    def cells(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """This column's text in each row."""
        key, spec, unknown = self.key, self.spec, self.unknown
        return [fmt(r.get(key), spec, unknown) for r in rows]


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _left(col: Col, cells: Iterable[str]) -> bool:
    """Whether a column is aligned left: as asked, else unless its cells are numbers."""
    if col.left is not None:
        return col.left
    sample = [c for c in itertools.islice(cells, ALIGN_SAMPLE) if c != col.unknown]
    return not all(map(_numeric, sample))


def param_col(axis: str) -> Col:
    """The column of a swept parameter (``param.AXIS`` in a row; '-' where it does not apply)."""
    return Col(f"param.{axis}", axis, spec="", unknown="-")


@dataclass
class Grid:
    """A table as plain text: its columns, each column's cells, notes printed under it."""

    cols: list[Col]
    cells: list[list[str]]
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, cols: Sequence[Col], rows: Sequence[Mapping[str, Any]],
           notes: Sequence[str] = ()) -> Grid:
        """The cells of ``cols`` in each row."""
        return cls(list(cols), [c.cells(rows) for c in cols], list(notes))

    def widths(self) -> list[int]:
        """Each column's width: its widest cell or header."""
        return [max(len(c.header), max(map(len, cells), default=0))
                for c, cells in zip(self.cols, self.cells, strict=True)]

    def width(self) -> int:
        """The width of a line of this table."""
        return sum(self.widths()) + len(GAP) * (len(self.cols) - 1)

    def lines(self) -> Iterator[str]:
        """The header, a rule and one line per row; cells are never cut."""
        widths = self.widths()
        pads = [str.ljust if _left(c, cells) else str.rjust
                for c, cells in zip(self.cols, self.cells, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return GAP.join([pad(text, w) for pad, text, w in zip(pads, cells, widths,
                                                                  strict=True)]).rstrip()

        yield line([c.header for c in self.cols])
        yield GAP.join("-" * w for w in widths)
        for cells in zip(*self.cells, strict=True):
            yield line(cells)
        yield from self.notes


def emit(lines: Iterable[str]) -> None:
    """Write lines to standard output as they are (no markup, no wrapping), in one write."""
    console.file.write("".join(f"{line}\n" for line in lines))


def fitted(rows: Sequence[Mapping[str, Any]], head: Sequence[Col], params: Sequence[Col],
           tail: Sequence[Col], *, width: int, keep: int = 1,
           everything: str = "--wide shows every column") -> Grid:
    """The widest arrangement of the columns that fits ``width`` characters.

    First every column; then the swept parameters merged into one ``setup`` column; then the
    last columns of ``tail`` left out (``keep`` of them stay; a note names them and says where
    they are: ``everything``). Where nothing fits, the narrowest: lines are then longer than
    the terminal, but no number is cut.
    """
    texts = {id(c): c.cells(rows) for c in (*head, *params, *tail)}

    def grid(cols: Sequence[Col], notes: Sequence[str] = ()) -> Grid:
        wrapped = [part for text in notes for part in textwrap.wrap(text, max(width, 20))]
        return Grid(list(cols), [texts[id(c)] for c in cols], wrapped)

    options = [grid([*head, *params, *tail])]
    base, notes = [*head, *params], []
    if len(params) > 1:
        setup = Col("setup", "setup", spec="", left=True)
        texts[id(setup)] = ["/".join(parts)
                            for parts in zip(*(texts[id(c)] for c in params), strict=True)]
        base, notes = [*head, setup], [f"setup = {'/'.join(c.header for c in params)}"]
        options.append(grid([*base, *tail], notes))
    for k in range(1, len(tail) - keep + 1):
        hidden = ", ".join(c.header for c in tail[len(tail) - k:])
        options.append(grid([*base, *tail[:len(tail) - k]],
                            [*notes, f"not shown: {hidden} ({everything})"]))
    return next((g for g in options if g.width() <= width), options[-1])


# -- a study's progress -------------------------------------------------------------------------


def run_figures(headline: Mapping[str, float | None]) -> str:
    """A finished run's headline figures in one short line."""
    return "  ".join(f"{m.short} {fmt(headline.get(m.column), m.spec)}" for m in PER_RUN[:3])


def where_ran(rec: RunRecord) -> str:
    """``[gpus 0,1]`` / ``[cpus 0-3]``: where a run ran; empty when neither was assigned."""
    where = describe_placement(rec.gpus, rec.cpus)
    return f"[{where}]  " if where else ""


def run_line(rec: RunRecord, *, simulated: bool = False) -> str:
    """One line of markup for a finished run: where, its figures (simulated energy marked), or why."""
    where = escape(where_ran(rec))
    if rec.status == "done":
        sim = "  [red](energy from SIMULATED GPUs)[/]" if simulated else ""
        return (f"[green]done[/]   {rec.run_id}  {where}{escape(run_figures(rec.headline))}  "
                f"({fmt(rec.duration_s, '.1f')} s){sim}")
    why = f"{rec.reason}: {rec.message}" if rec.message else str(rec.reason)
    return f"[red]{rec.status}[/] {rec.run_id}  {where}{escape(why)}"


class StudyDisplay:
    """Renders a study's progress events: a progress bar and one line per finished run.

    It prints nothing for a stopped study: the error that ends the command says why, once.
    """

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console,
        )
        self.task: TaskID | None = None
        #: why the study stopped early (an error or the command says it)
        self.stopped: str | None = None

    def __call__(self, event: Event) -> None:
        """Render one event (the Observer protocol)."""
        match event:
            case StudyStarted():
                self.study_started(event)
            case RunStarted():
                self.run_started(event)
            case RunFinished():
                self.run_finished(event)
            case Pause():
                self._describe(f"pause {event.seconds:.0f} s")
            case StudyAborted() | StudyInterrupted():
                self.stopped = event.message
            case SignalReceived():
                self.signal_received(event)
            case OrphanFound():
                self.orphan_found(event)
            case RunRecovered():
                self.line(f"recovered {event.run_id}: {event.status} ({event.message or ''})")
            case EngineWaiting():
                self.line(f"[yellow]the container engine does not answer ({event.waited_s:.0f} "
                          f"of {event.limit_s:.0f} s waited):[/] ", event.message)
            case Note():
                self.line("[yellow]note:[/] ", event.message)
            case _:
                assert_never(event)

    def study_started(self, event: StudyStarted) -> None:
        """Start the progress bar; runs already done count as completed."""
        self.progress.start()
        self.task = self.progress.add_task("study", total=event.total,
                                           completed=event.total - event.todo)

    def run_started(self, event: RunStarted) -> None:
        """Name the run in flight beside the bar."""
        exp = event.experiment
        where = f" on {event.placement}" if event.placement else ""
        self._describe(f"{event.run.run_id} {exp.backend}/{exp.precision}/bs{exp.batch_size}"
                       f"{where}")

    def run_finished(self, event: RunFinished) -> None:
        """One line: the run's figures, or why it failed."""
        simulated = event.result is not None and event.result.energy.energy_method == "simulated"
        self.progress.console.print(run_line(event.record, simulated=simulated))
        if self.task is not None:
            self.progress.advance(self.task)

    def signal_received(self, event: SignalReceived) -> None:
        """Say what Ctrl+C (or SIGTERM) does now."""
        if event.force:
            self.line(f"[red]{event.signal} again: killing the run in flight[/]")
        else:
            self.line(f"[yellow]{event.signal}: stopping the run in flight gracefully "
                      "(press Ctrl+C again to force)[/]")

    def orphan_found(self, event: OrphanFound) -> None:
        """Say that a lost controller's container is being removed."""
        self.line(f"[yellow]found container {event.container} of run {event.run_id} left by a "
                  f"lost controller (pid {event.controller_pid}); stopping and removing it[/]")

    def line(self, markup: str, text: str = "") -> None:
        """Print a line above the bar: ``markup`` styled, ``text`` as written."""
        self.progress.console.print(markup + escape(text))

    def _describe(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=escape(text))

    def close(self) -> None:
        """Stop the progress bar (if it started)."""
        if self.task is not None:
            self.progress.stop()
