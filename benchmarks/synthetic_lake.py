"""A synthetic results lake: many runs of many models, in the real layout and schema.

    .venv/bin/python benchmarks/synthetic_lake.py GOAT_HOME [--runs 200] [--tasks 1000] [--epochs 5]
        [--models 20] [--suites 2]

Writes `GOAT_HOME/lake/results/<run_id>.parquet`, one file per run (as `bench.lake.write_results`
does: zstd Parquet, written aside and renamed), with exactly the columns and DuckDB types of
`ResultRow` (`RESULT_TYPES`, derived from the model); a row of each file is read back and validated
by `ResultRow`. The defaults give 200 runs x 1000 tasks x 5 epochs = 1,000,000 rows; runs cycle
through the models, then the suites, so each (model, suite) has several runs and the latest one
counts. Outcomes are deterministic (hashes of run, task and epoch): a model's skill and a task's
difficulty set its pass probability; 2% of attempts are errors, of every kind. Each run has its
manifest in `lake/runs/` (`RunManifest`, made with the current prompt set, harness and grader, the
same setup for every run): the leaderboard ranks only such runs.

The rows are made in DuckDB SQL (a million pydantic objects would take minutes); the schema is the
writer's own.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from goat_dagster.bench.lake import ERROR_KINDS, RESULT_COLUMNS, RESULT_TYPES, ResultRow, write_lake_file
from goat_dagster.bench.manifest import MANIFEST_TYPES, RunManifest, current_setup


@dataclass(frozen=True)
class LakeShape:
    runs: int = 200
    tasks: int = 1000
    epochs: int = 5
    models: int = 20
    suites: int = 2

    @property
    def rows(self) -> int:
        return self.runs * self.tasks * self.epochs


def _u(*parts: str) -> str:
    """A deterministic uniform number in [0, 1) from SQL expressions."""
    return f"(hash({', '.join(parts)}) % 1000003) / 1000003.0"


def run_sql(run: int, shape: LakeShape) -> tuple[str, str]:
    """(run_id, the SELECT of the run's rows, in the lake's column order and types)."""
    model_no = run % shape.models
    suite_no = (run // shape.models) % shape.suites
    model, suite = f"model-{model_no:02d}", f"suite-{suite_no}"
    run_id = f"synth-{run:04d}-{model}-{suite}"
    skill = 0.25 + 0.6 * model_no / max(1, shape.models - 1) + 0.01 * (run // shape.models)
    u_task, u_status, u_err = (
        _u(f"'{suite}'", "t.i"),
        _u(f"'{run_id}'", "t.i", "e.epoch"),
        _u(f"'{run_id}'", "t.i", "e.epoch", "'error'"),
    )
    kinds = "[" + ", ".join(f"'{k}'" for k in ERROR_KINDS) + "]"
    values = {
        "run_id": f"'{run_id}'",
        "suite": f"'{suite}'",
        "suite_version": f"'v{suite_no}'",
        "model": f"'{model}'",
        "agent": "'builtin'",
        "sandbox": "'local'",
        "task_id": "'task-' || lpad(CAST(t.i AS VARCHAR), 4, '0')",
        "epoch": "e.epoch",
        "status": f"CASE WHEN {u_err} < 0.02 THEN 'error' "
        f"WHEN {u_status} < {skill} * (1 - 0.7 * {u_task}) THEN 'passed' ELSE 'failed' END",
        "error_kind": f"CASE WHEN {u_err} < 0.02 THEN {kinds}[1 + CAST(floor({u_err} * 200) AS INT) % "
        f"{len(ERROR_KINDS)}] END",
        "started_at": f"TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL ({run}) HOUR "
        f"+ INTERVAL ((t.i * {shape.epochs} + e.epoch) * 2) SECOND",
        "finished_at": f"TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL ({run}) HOUR "
        f"+ INTERVAL ((t.i * {shape.epochs} + e.epoch) * 2 + 1 + 30 * {u_status}) SECOND",
        "wall_s": f"1 + 30 * {u_status}",
        "steps": f"1 + CAST(10 * {u_task} AS INT)",
        "tool_calls": f"CAST(10 * {u_task} AS INT)",
        "prompt_tokens": f"CAST(2000 + 20000 * {u_status} AS BIGINT)",
        "completion_tokens": f"CAST(200 + 2000 * {u_task} AS BIGINT)",
        "cost_usd": f"0.0001 * (1 + 10 * {u_status})",
        "trace_id": f"'{run_id}-' || t.i || '-' || e.epoch",
    }
    assert tuple(values) == RESULT_COLUMNS, "the generator must follow ResultRow, column for column"
    select = ",\n    ".join(f"CAST({values[c]} AS {t}) AS {c}" for c, t in RESULT_TYPES.items())
    return run_id, (
        f"SELECT\n    {select}\nFROM range({shape.tasks}) t(i), range(1, {shape.epochs + 1}) e(epoch)"
    )


def manifest(run_id: str, select: str, con: duckdb.DuckDBPyConnection, shape: LakeShape) -> RunManifest:
    """The run's manifest: the current setup, the same for every run (only the model differs)."""
    suite, suite_version, model, started = con.execute(
        f"SELECT suite, suite_version, model, min(started_at) FROM ({select}) GROUP BY ALL"
    ).fetchone()  # type: ignore[misc]
    return RunManifest(
        run_id=run_id,
        suite=suite,
        suite_version=suite_version,
        model=model,
        agent="builtin",
        sandbox="local",
        created_at=started,
        epochs=shape.epochs,
        prompt_set="builtin",
        prompt_sha256=current_setup().prompt_sha256,
        goat_version="synthetic",
        engine="synthetic",
        sampling={"temperature": 0.3},
    ).with_fingerprint()


def generate(home: Path, shape: LakeShape) -> Path:
    """Write the lake under `home` (results and manifests); returns the results directory."""
    lake = home / "lake" / "results"
    lake.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(":memory:") as con:
        con.execute("SET TimeZone = 'UTC'")
        for run in range(shape.runs):
            run_id, select = run_sql(run, shape)
            target = lake / f"{run_id}.parquet"
            tmp = target.with_name(f".{target.stem}.parquet.tmp")
            con.execute(f"COPY ({select}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
            tmp.replace(target)
            cur = con.execute(f"SELECT * FROM read_parquet('{target}') LIMIT 1")
            names = [d[0] for d in cur.description]
            ResultRow(**dict(zip(names, cur.fetchall()[0], strict=True)))  # the writer's schema, checked
            write_lake_file(
                home / "lake" / "runs" / f"{run_id}.parquet",
                [manifest(run_id, select, con, shape)],
                MANIFEST_TYPES,
            )
    return lake


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("home", type=Path, help="a GOAT_HOME to write lake/results/ into")
    for name, default in vars(LakeShape()).items():
        ap.add_argument(f"--{name}", type=int, default=default)
    args = ap.parse_args()
    shape = LakeShape(**{k: getattr(args, k) for k in vars(LakeShape())})
    t0 = time.perf_counter()
    lake = generate(args.home, shape)
    print(f"{shape.rows:,} rows in {shape.runs} files under {lake} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
