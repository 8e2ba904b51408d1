"""What a benchmark section hands the report and the chart: tables, goals, chart panels, notes.

Each comparison module has ``run(env) -> Section``. A :class:`Goal` is checked where it is made
(``met``), so the report never re-derives a verdict; a missed goal carries its explanation and,
where one was taken, the profile that shows where the time went.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Goal:
    """One target of the issue: ``value`` against ``target`` (``higher`` is better or not)."""

    text: str
    value: float
    target: float
    higher: bool = True
    unit: str = "x"

    @property
    def met(self) -> bool:
        if self.value != self.value:  # NaN: not measured
            return False
        return self.value >= self.target if self.higher else self.value <= self.target

    def render(self) -> str:
        mark = "met" if self.met else "**missed**"
        sign = ">=" if self.higher else "<="
        return (
            f"{self.text}: {fmt(self.value)}{self.unit} (goal {sign} {fmt(self.target)}"
            f"{self.unit}) - {mark}"
        )


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([c if isinstance(c, str) else fmt(c) for c in cells])  # type: ignore[arg-type]

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.header) + " |",
            "|" + "|".join("---" for _ in self.header) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


@dataclass
class Panel:
    """One bar chart of the PNG: ``bars`` label -> value, in ``unit``; ``ref`` draws a line."""

    title: str
    bars: dict[str, float]
    unit: str
    ref: float | None = None


@dataclass
class Section:
    name: str
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str = ""
    seconds: float = 0.0
    error: str = ""

    @property
    def missed(self) -> list[Goal]:
        return [g for g in self.goals if not g.met]


def fmt(x: float | int) -> str:
    """Numbers for humans: thousands separators, 2 decimals below 10, 1 below 100."""
    if isinstance(x, int):
        return f"{x:,}"
    if x != x:
        return "n/a"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"
