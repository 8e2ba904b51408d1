"""5. Scaling: 1, 2 and 4 worker processes; segment size; worker concurrency x batch threads.

Every pipeline point is paired with a raw-ceiling run (8 threads) right before it, and reported
both as items/s and as x that raw run, which cancels most of the machine's drift. A setting is
"the measured best" when its default scores within ``TOLERANCE`` of the best point of its sweep
(differences smaller than that are inside this machine's run-to-run noise).
"""

from __future__ import annotations

from bench import raw, runs
from bench.env import USER, BenchEnv
from bench.model import Goal, Panel, Section, Table
from bench.stats import median
from pipeline.config import PipelineConfig

TOLERANCE = 0.9
RAW_THREADS = 8


def _point(
    env: BenchEnv, items: list[raw.Item], reps: int, **producer_env: str
) -> tuple[float, float]:
    """(median items/s, median x raw) of ``reps`` paired runs on the running workers."""
    producer = env.producer(**producer_env)
    rates, ratios = [], []
    for _ in range(reps):
        base = runs.raw_load(env, items, RAW_THREADS)
        rate = runs.pipeline_load(env, producer, items)
        rates.append(rate)
        ratios.append(rate / base)
    return median(rates), median(ratios)


def run(env: BenchEnv) -> Section:
    quick = env.quick
    n, reps = (1_500, 1) if quick else (30_000, 2)
    defaults = PipelineConfig()
    items = raw.make_items(n, 200, USER)
    sec = Section(
        "scaling",
        "5. Scaling and defaults",
        intro=(
            f"Loads of {n:,} items of 200 B; {reps} paired rounds per point (raw ceiling with "
            f"{RAW_THREADS} threads, then the pipeline). Defaults: segment size "
            f"{defaults.segment_size}, worker concurrency {defaults.worker_concurrency}, batch "
            f"threads {defaults.batch_threads}."
        ),
    )
    by_workers: dict[int, tuple[float, float]] = {}
    for w in (4, 2, 1):
        env.pool(w)
        runs.warm_up(env, env.producer(), 500)
        by_workers[w] = _point(env, items, reps)
        if w == 2:
            sizes = (250, 500) if quick else (100, 250, 500, 1000, 2000)
            by_size = {s: _point(env, items, reps, DATAFOLD_SEGMENT_SIZE=str(s)) for s in sizes}
    t = Table(["worker processes", "items/s", "x raw"])
    for w in sorted(by_workers):
        t.add(str(w), *by_workers[w])
    sec.tables.append(t)
    t = Table(["segment size (2 workers)", "items/s", "x raw"])
    for s, v in by_size.items():
        t.add(str(s) + (" (default)" if s == defaults.segment_size else ""), *v)
    sec.tables.append(t)
    best_size = max(by_size, key=lambda s: by_size[s][1])
    sec.goals.append(
        Goal(
            f"default segment size {defaults.segment_size} vs best ({best_size})",
            by_size.get(defaults.segment_size, (0, 0))[1] / by_size[best_size][1],
            TOLERANCE,
        )
    )
    sec.panels.append(
        Panel(
            "Scaling: x raw ceiling",
            {
                **{
                    f"{w} worker{'s' if w > 1 else ''}": v[1] for w, v in sorted(by_workers.items())
                },
                **{f"seg {s}": v[1] for s, v in by_size.items()},
            },
            "x raw",
            ref=1.0,
        )
    )
    if not quick:
        combos = ((8, 8), (4, 4), (2, 4), (4, 2), (8, 2), (2, 8))
        by_combo: dict[tuple[int, int], tuple[float, float]] = {}
        for c, b in combos:
            env.pool(2, DATAFOLD_WORKER_CONCURRENCY=str(c), DATAFOLD_BATCH_THREADS=str(b))
            runs.warm_up(env, env.producer(), 500)
            by_combo[(c, b)] = _point(env, items, 2)
        env.stop_workers()
        t = Table(["concurrency x batch threads (2 workers)", "in flight", "items/s", "x raw"])
        dflt = (defaults.worker_concurrency, defaults.batch_threads)
        for (c, b), v in by_combo.items():
            t.add(f"{c} x {b}" + (" (default)" if (c, b) == dflt else ""), str(2 * c * b), *v)
        sec.tables.append(t)
        best = max(by_combo, key=lambda k: by_combo[k][1])
        if dflt in by_combo:
            sec.goals.append(
                Goal(
                    f"default concurrency x threads {dflt[0]} x {dflt[1]} vs "
                    f"best ({best[0]} x {best[1]})",
                    by_combo[dflt][1] / by_combo[best][1],
                    TOLERANCE,
                )
            )
    return sec
