"""The ``guanhuai`` command: run, feed, inspect and audit the system of record."""

from __future__ import annotations

import asyncio
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.settings import Settings
from services.reporting.safe import terminal_text

app = typer.Typer(
    help="guanhuai 关怀: the system of record for family-planning household accident insurance "
    "(计划生育家庭意外伤害保险).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,  # locals hold the data being handled: resident IDs among it
)
schema_app = typer.Typer(help="Event contracts (JSON Schema).", no_args_is_help=True)
audit_app = typer.Typer(help="Auditors' tools: verify the tamper-evident event log; sign and check checkpoints held outside it.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: figures with the raw reference measured in the same run.", no_args_is_help=True)
targets_app = typer.Typer(help="Yearly township targets (指导性任务).", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
app.add_typer(audit_app, name="audit")
app.add_typer(bench_app, name="bench")
app.add_typer(targets_app, name="targets")
dlq_app = typer.Typer(help="Dead letters: inputs that could not be taken, kept with their bytes and reason.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
NatsUrl = Annotated[str | None, typer.Option("--nats-url", help="NATS server(s). Default: the running `guanhuai up`, else GUANHUAI_NATS_URL.")]
ConnectTimeout = Annotated[float, typer.Option("--connect-timeout", min=0.1, help="Seconds to reach NATS before giving up with one line naming the server.")]


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    csv_raw = "csv-raw"
    xlsx = "xlsx"


class By(str, Enum):
    recorded = "recorded"
    occurred = "occurred"


class Kind(str, Enum):
    county = "county"
    insurer = "insurer"


class Component(str, Enum):  # guanhuai.serve.COMPONENTS, spelled out so --help lists them without importing it
    enrollment = "enrollment"
    subsidy = "subsidy"
    claims = "claims"
    reporting = "reporting"
    relay = "relay"
    api = "api"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"guanhuai {version('guanhuai')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """guanhuai 关怀: the system of record for family-planning household accident insurance (计划生育家庭意外伤害保险)."""

# Not on a terminal (a pipe, a file, a script), rich would cut tables and wrap lines at 80 columns:
# what is read by tools and saved by people is written whole.
err = Console(stderr=True, soft_wrap=True)
out = Console() if sys.stdout.isatty() else Console(width=250)

AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output (the same as --format json).")]

DbUrl = Annotated[
    str | None,
    typer.Option("--db-url", help="Event log database URL (sqlite:///FILE or postgresql://...). Default: GUANHUAI_DB_URL, else SQLite under data/."),
]


def _db_url(db_url: str | None) -> str:
    return db_url or Settings().database_url


async def _open_log(db_url: str | None):  # type: ignore[no-untyped-def]
    """The existing event log for reading (never creates a database file; one line when absent)."""
    from guanhuai.ops import open_event_log

    return await open_event_log(_db_url(db_url))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False, disable=not err.is_terminal,
    )


def _with_progress(work):  # type: ignore[no-untyped-def]
    """Run ``work(progress)`` (a coroutine factory); ``progress(label, done, total)`` draws one bar
    per label on stderr (only in a terminal)."""
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        return asyncio.run(work(progress))


@schema_app.command("export")
def schema_export(directory: Annotated[Path, typer.Argument(help="Folder to write <EventType>.json files into.")]) -> None:
    """Write one JSON Schema file per event type, generated from the event models."""
    from shared.events import registry

    directory.mkdir(parents=True, exist_ok=True)
    schemas = registry.json_schemas()
    for name, schema in schemas.items():
        (directory / f"{name}.json").write_text(json.dumps(schema, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    out.print(f"wrote {len(schemas)} schemas to {directory}")


@schema_app.command("asyncapi")
def schema_asyncapi(path: Annotated[Path, typer.Argument(help="Where to write the AsyncAPI document (.json).")]) -> None:
    """Write the AsyncAPI document of every subject and message, generated from the code."""
    from shared.events.asyncapi import build_asyncapi

    path.parent.mkdir(parents=True, exist_ok=True)
    # Sorted keys: the same code writes the same file, whatever order sets iterate in this run.
    path.write_text(json.dumps(build_asyncapi(), ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    out.print(f"wrote {path}")


@schema_app.command("reasons")
def schema_reasons(path: Annotated[Path, typer.Argument(help="The Markdown file whose reason list to rewrite (docs/integration.md).")]) -> None:
    """Rewrite the reason codes between <!-- reasons:start --> and <!-- reasons:end --> from the catalogue."""
    from shared.events.reasons import DOCS_END, DOCS_START, with_catalogue

    document = path.read_text(encoding="utf-8")
    if DOCS_START not in document or DOCS_END not in document:
        err.print(f"{path} 中没有 {DOCS_START} … {DOCS_END} 标记 / {path} has no {DOCS_START} … {DOCS_END} markers")
        raise typer.Exit(1)
    path.write_text(with_catalogue(document), encoding="utf-8")
    out.print(f"wrote the reason codes into {path}")


@schema_app.command("docs")
def schema_docs(path: Annotated[Path, typer.Argument(help="docs/integration.md")]) -> None:
    """Rewrite the generated blocks of the integration guide: the inbound events with their fields
    and outcomes (<!-- inbound:start -->) and the reason codes (<!-- reasons:start -->)."""
    from shared.events import inbound, reasons

    document = path.read_text(encoding="utf-8")
    for module in (inbound, reasons):
        if module.DOCS_START not in document or module.DOCS_END not in document:
            err.print(f"{path} 中没有 {module.DOCS_START} 标记 / {path} has no {module.DOCS_START} … {module.DOCS_END} markers")
            raise typer.Exit(1)
    path.write_text(reasons.with_catalogue(inbound.with_inbound(document)), encoding="utf-8")
    out.print(f"wrote the inbound events and reason codes into {path}")


@audit_app.command("verify")
def audit_verify(
    db_url: DbUrl = None,
    checkpoint: Annotated[list[Path] | None, typer.Option("--checkpoint", help="A signed checkpoint file, or a folder of them (repeatable): the log must still extend each.")] = None,
    head: Annotated[list[str] | None, typer.Option("--head", help="POSITION:HASH named by a report (repeatable): the log must still extend it.")] = None,
    public_key: Annotated[Path | None, typer.Option("--public-key", help="The checkpoints' public key (PEM, from `audit keygen`).")] = None,
) -> None:
    """Recompute the hash chain over the whole log, and prove it still extends the checkpoints and
    heads given. Exit 0 and print the count and head when it holds; exit 1 naming the first bad
    position when a row was altered, removed, reordered, stored as another type, when the tail was
    cut below a checkpoint, or when history was rewritten and rehashed."""
    from shared.events.audit import CheckpointError, Claim, LogHead, load_checkpoints, load_public_key, verify_chain

    claims: list[Claim] = []
    try:
        for text in head or []:
            held = LogHead.parse(text)
            claims.append(Claim(held.position, held.hash, f"head {held}"))
    except ValueError as exc:
        _audit_refused(f"--head 格式应为 POSITION:HASH / {exc}", code=2)
    try:
        loaded = load_checkpoints(checkpoint or [])
        if loaded and public_key is None:
            _audit_refused("核对检查点需要 --public-key / --checkpoint needs --public-key (the PEM from `audit keygen`)", code=2)
        key = load_public_key(public_key) if public_key else None
        for source, point in loaded:
            point.verify(key, source)  # type: ignore[arg-type]
            claims.extend(point.claims(source))
    except CheckpointError as exc:
        _audit_failed(None, exc.zh, str(exc))

    async def main() -> int:
        from sqlalchemy.exc import SQLAlchemyError

        from shared.events.store import EventStore

        store = await _open_log(db_url)
        try:
            with _progress() as bar:
                task = bar.add_task("verifying", total=await store.head_position())
                result = await verify_chain(store, on_progress=lambda n: bar.update(task, completed=n), claims=claims)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            _audit_failed(None, f"无法读取日志：{reason}", f"cannot read the log: {reason}")
        finally:
            await store.close()
        if result.ok:
            anchored = f"; extends {len(loaded)} checkpoint(s) and {len(head or [])} head(s)" if claims else (
                "; no checkpoint given: a cut tail or a rehashed history shows only against one")
            out.print(f"audit ok: {result.checked} events, hash chain intact, head {result.head}{anchored}", markup=False, soft_wrap=True)
            return 0
        _audit_failed(result.first_bad_position, result.problem_zh or "", result.problem or "")
        return 1

    raise typer.Exit(asyncio.run(main()))


def _audit_refused(message: str, code: int) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _audit_failed(position: int | None, zh: str, en: str) -> None:
    """One line for people (Chinese, then English) and a JSON line for tools; exit 1."""
    at = f" at position {position}" if position is not None else ""
    at_zh = f"（第 {position} 位）" if position is not None else ""
    err.print(f"审计失败{at_zh}：{zh} / audit FAILED{at}: {en}", markup=False, highlight=False, soft_wrap=True)
    print(json.dumps({"ok": False, "first_bad_position": position, "problem": en}, ensure_ascii=False), flush=True)
    raise typer.Exit(1)


@audit_app.command("keygen")
def audit_keygen(out_path: Annotated[Path, typer.Option("--out", help="Where to write the private key (PEM, mode 0600); the public key goes to OUT.pub.")]) -> None:
    """Make an Ed25519 key pair for signing checkpoints. Keep the private key off the database
    host's backups; give the public key to the auditors. Never overwrites a file."""
    from shared.events.audit import CheckpointError, generate_key

    try:
        public_path, fingerprint = generate_key(out_path)
    except (CheckpointError, OSError) as exc:
        _audit_refused(f"{getattr(exc, 'zh', '无法生成密钥')} / {exc}", code=1)
    out.print(f"private key {out_path} (mode 0600); public key {public_path}; key id {fingerprint}", markup=False, soft_wrap=True)


@audit_app.command("checkpoint")
def audit_checkpoint(
    key: Annotated[Path | None, typer.Option("--key", help="The private signing key (PEM). Default: GUANHUAI_AUDIT_KEY.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the checkpoint here (never overwritten); default: print it.")] = None,
    db_url: DbUrl = None,
) -> None:
    """Verify the whole chain, then sign the log's head (position, hash, when it was recorded,
    anchors every 1,000 positions) and write it as a small JSON file, or print it for archiving."""
    from shared.events.audit import CheckpointError, load_private_key, make_checkpoint

    key = key or Settings().audit_key
    if key is None:
        _audit_refused("需要签名密钥：--key 或 GUANHUAI_AUDIT_KEY / a signing key is needed: --key or GUANHUAI_AUDIT_KEY", code=2)
    if out_file is not None and out_file.exists():
        _audit_refused(f"{out_file} 已存在，检查点不会被覆盖 / {out_file} exists; a checkpoint is never overwritten", code=1)

    async def main():  # type: ignore[no-untyped-def]
        from sqlalchemy.exc import SQLAlchemyError

        from shared.events.store import EventStore

        store = await _open_log(db_url)
        try:
            return await make_checkpoint(store, load_private_key(key))
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            raise CheckpointError(f"cannot read the log: {reason}", f"无法读取日志：{reason}") from exc
        finally:
            await store.close()

    try:
        point = asyncio.run(main())
    except CheckpointError as exc:
        _audit_failed(None, exc.zh, str(exc))
    if out_file is None:
        print(point.to_json(), end="", flush=True)
        return
    with out_file.open("x", encoding="utf-8") as f:
        f.write(point.to_json())
    err.print(f"wrote {out_file}: head {point.head}, key id {point.key_id}", markup=False, soft_wrap=True)


@bench_app.command("store")
def bench_store(
    events: Annotated[int, typer.Option(help="How many events to append and replay.")] = 1_000_000,
    batch: Annotated[int, typer.Option(help="Events per append transaction.")] = 1000,
    workdir: Annotated[Path | None, typer.Option(help="Where to put the temporary databases.")] = None,
    replay_rounds: Annotated[int, typer.Option(min=1, help="Rounds of one replay each, the two sides taking turns to go first; the ratio is the median of the rounds' ratios.")] = 3,
) -> None:
    """Append EVENTS in batches and replay them through the event log, then do the same with plain
    sqlite3 (executemany; select and json.loads). The replays run in rounds, one of each side, each
    side going first in every other round; the replay ratio is the median of the rounds' ratios.
    Prints events/s, ratios and replay peak memory; the last line is JSON."""
    from guanhuai.bench.store import peer_lines, run

    figures = _with_progress(lambda progress: run(events, batch, workdir, progress, replay_rounds))
    d = figures.as_dict()
    for n, r in enumerate(d["replay_rounds"], start=1):
        out.print(f"replay round {n}: guanhuai {r['replay_events_per_s']:>9,} ev/s   plain sqlite3 "
                  f"{r['plain_sqlite_replay_per_s']:>9,} ev/s   ratio {r['ratio']:.2f}")
    out.print(f"append:  guanhuai {d['append_events_per_s']:>9,} ev/s   plain sqlite3 {d['plain_sqlite_append_per_s']:>9,} ev/s   ratio {d['append_ratio']:.2f} (target ≥ 0.50)")
    out.print(f"replay (median):  guanhuai {d['replay_events_per_s']:>9,} ev/s   plain sqlite3 {d['plain_sqlite_replay_per_s']:>9,} ev/s   ratio {d['replay_ratio']:.2f} (target ≥ 0.60)")
    out.print(f"replay peak RSS: guanhuai {d['replay_peak_rss_mb']} MB, plain {d['plain_replay_peak_rss_mb']} MB (target < 200 MB)")
    for line in peer_lines(d):
        out.print(line, markup=False)
    print(json.dumps(d), flush=True)


@targets_app.command("load")
def targets_load(
    table: Annotated[str, typer.Argument(help="A target table JSON file, or a built-in name: mingxi-2020.")] = "mingxi-2020",
    source: Annotated[str, typer.Option(help="Who says so (recorded as the events' source).")] = "county-association",
    db_url: DbUrl = None,
) -> None:
    """Record a county's yearly township targets (and its townships) in the event log.
    Loading the same table again records nothing new."""
    from guanhuai.targets import load, read_table
    from shared.events.store import EventStore

    parsed = read_table(table)

    async def main() -> int:
        store = await EventStore.open(_db_url(db_url))
        try:
            return await load(store, parsed, source)
        finally:
            await store.close()

    new = asyncio.run(main())
    out.print(f"{parsed.county.name} {parsed.programme_year}: {len(parsed.townships)} townships, {new} new events recorded")


@targets_app.command("show")
def targets_show(
    year: Annotated[int, typer.Option(help="Programme year (投保年度).")],
    fmt: Annotated[TableOrJson, typer.Option("--format", help="table (Chinese headings) or json.")] = TableOrJson.table,
    db_url: DbUrl = None,
    as_json: AsJson = False,
) -> None:
    """Print a year's township targets as recorded in the event log (指导性任务表)."""
    from dataclasses import asdict

    from rich.table import Table

    from guanhuai.targets import targets_for_year
    from shared.events.store import EventStore

    async def main():  # type: ignore[no-untyped-def]
        store = await _open_log(db_url)
        try:
            return await targets_for_year(store, year)
        finally:
            await store.close()

    rows = asyncio.run(main())
    if as_json or fmt == "json":
        print(json.dumps([asdict(r) for r in rows], ensure_ascii=False))
        return
    table = Table(title=f"{year}年计生家庭意外伤害保险指导性任务表")
    for heading in ("乡镇", "指导任务数", "政府投保任务数", "自主投保任务数"):
        table.add_column(heading, justify="left" if heading == "乡镇" else "right")
    for r in rows:
        table.add_row(terminal_text(r.name), str(r.target_total), str(r.target_government), str(r.target_self))
    table.add_section()
    table.add_row("合计", *(str(sum(getattr(r, f) for r in rows)) for f in ("target_total", "target_government", "target_self")))
    out.print(table)
    if not rows:
        err.print(f"no targets recorded for {year}")
        raise typer.Exit(1)


@app.command("serve")
def serve_command(
    component: Annotated[Component, typer.Argument(help="enrollment, subsidy, claims, reporting, relay, or api (the HTTP API and dashboard).")],
    nats_url: Annotated[str | None, typer.Option("--nats-url", help="NATS server(s), comma-separated. Default: GUANHUAI_NATS_URL.")] = None,
    db_url: DbUrl = None,
    port: Annotated[int | None, typer.Option(help="HTTP port of the api component (default GUANHUAI_API_PORT or 8640).")] = None,
    host: Annotated[str | None, typer.Option(help="Address the api component listens on (default GUANHUAI_API_HOST or 127.0.0.1).")] = None,
    public: Annotated[bool, typer.Option("--public", help="Let the api listen beyond loopback without GUANHUAI_API_TOKEN (logged as a warning).")] = False,
) -> None:
    """Run one service (or the relay that publishes the log to NATS, or the reporting HTTP API)
    until SIGTERM or Ctrl-C. Without GUANHUAI_API_TOKEN the api listens on loopback only."""
    from guanhuai.serve import COMPONENTS, ApiRefused, serve
    from shared.events.broker import InboundStreamUpgrade

    component = component.value  # type: ignore[assignment]
    if component not in COMPONENTS:
        err.print(f"unknown component {component!r}; choose from {', '.join(COMPONENTS)}")
        raise typer.Exit(2)
    overrides = {k: v for k, v in {"nats_url": nats_url, "db_url": db_url, "api_port": port, "api_host": host,
                                   "api_public": public}.items() if v}
    try:
        asyncio.run(serve(component, Settings(**overrides)))
    except (ApiRefused, InboundStreamUpgrade) as refused:
        err.print(str(refused), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception:  # noqa: BLE001 - a crash is written as a log line, masked like every other
        from shared.events.logs import get_logger

        get_logger(component=component).exception("component_crashed")
        raise typer.Exit(1) from None


@bench_app.command("rebuild")
def bench_rebuild(
    events: Annotated[int, typer.Option(help="How many events in the log to rebuild from.")] = 1_000_000,
    workdir: Annotated[Path | None, typer.Option(help="Where to put the temporary database.")] = None,
    log: Annotated[Path | None, typer.Option(help="Keep the generated log in this SQLite file, or reuse it if it is there (of the same size).")] = None,
    live_per_s: Annotated[int, typer.Option(min=0, help="Events a second arriving during the rebuild, projected live into the serving version (0: none).")] = 0,
) -> None:
    """Rebuild the township/year read model from a log of EVENTS events (a new version beside the
    serving one, then switched in), and scan the same log with plain sqlite3 and json.loads.
    Prints the time to generate the log and to rebuild, events/s, the ratio and peak memory; the
    last line is JSON."""
    from guanhuai.bench.rebuild import run

    figures = _with_progress(lambda progress: run(events, workdir, progress, log=log, live_per_s=live_per_s))
    made = ("log reused" if figures["log_reused"] else
            f"log generated in {figures['generate_s']:,} s ({figures['generate_events_per_s']:,} ev/s)")
    out.print(f"{made}   rebuild {figures['rebuild_s']:,} s, RSS MB by tenth {figures['rebuild_rss_mb_by_tenth']}")
    out.print(f"rebuild: {figures['rebuild_events_per_s']:,} ev/s   plain sqlite3 scan: {figures['plain_sqlite_scan_per_s']:,} ev/s"
              f"   ratio {figures['ratio']:.2f} (target ≥ 0.50)   peak RSS {figures['rebuild_peak_rss_mb']} MB (target < 200)")
    if "beside_live" in figures:
        live = figures["beside_live"]
        out.print(f"beside the live projection: {live['events_during_rebuild']:,} events arrived during the rebuild, "
                  f"{live['reports_empty']} of {live['reports_read']} reports read empty; after the switch the serving "
                  f"version is at the head: {live['serving_checkpoint_is_head']}, its policies equal the log's: "
                  f"{live['serving_policies_equal_log']}")
    print(json.dumps(figures), flush=True)


@bench_app.command("pipeline")
def bench_pipeline(
    households: Annotated[int, typer.Option(help="How many households to publish.")] = 20_000,
    workdir: Annotated[Path | None, typer.Option(help="Where to put the temporary store and logs.")] = None,
    db_url: Annotated[str | None, typer.Option("--db-url", help="A PostgreSQL server (postgresql://USER@HOST/DB; DB is only connected to): also run the households on a database the bench creates there and drops, beside SQLite.")] = None,
    instances: Annotated[int, typer.Option(min=1, help="With --db-url: instances of each service (enrollment, subsidy) on PostgreSQL.")] = 2,
    relays: Annotated[int | None, typer.Option(min=1, help="With --db-url: relays on PostgreSQL (default: as many as --instances; each publishes the whole log, JetStream drops the repeats).")] = None,
) -> None:
    """Publish HOUSEHOLDS through enrollment and subsidy (durable JetStream, SQLite, each service its
    own process) and, on the same server, the raw nats-py round trip of as many messages. Prints
    households/s, the raw rate and the ratio; the CPU each component spent per household against
    what the target allows; and what plain sqlite3 inserts of the same rows cost (the database's
    share alone). With --db-url, the same households again on SQLite and on PostgreSQL with
    INSTANCES of each service, with where the time went (deciding, waiting for the log's write
    lock, writing, committing). The last line is JSON."""
    from guanhuai.bench.pipeline import compare_postgresql, peer_line, postgresql_lines, postgresql_unreachable, run

    if db_url is not None and (reason := postgresql_unreachable(db_url)) is not None:
        err.print(f"bench pipeline --db-url: {reason}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    figures = _with_progress(lambda progress: run(households, workdir, progress))
    out.print(f"end to end: {figures['households_per_s']:,} households/s   raw nats-py round trip: "
              f"{figures['raw_nats_round_trip_per_s']:,} msg/s   ratio {figures['ratio']:.2f} (target ≥ 0.30)")
    spent = "   ".join(f"{name} {ms:.3f}" for name, ms in figures["cpu_ms_per_household"].items())
    out.print(f"CPU ms per household: {spent}   (total {sum(figures['cpu_ms_per_household'].values()):.3f}; "
              f"the target allows {figures['cpu_ms_per_household_at_target']:.3f} on {figures['cores']} cores)")
    floor = figures["plain_sqlite_inserts"]
    out.print(f"plain sqlite3 inserts of the same {floor['rows']:,} rows: {floor['cpu_us_per_household'] / 1000:.3f} "
              f"CPU ms per household")
    moved = figures["nats_floor"]
    out.print(f"the same messages alone ({moved['publishes_per_household']} publishes and "
              f"{moved['deliveries_per_household']} deliveries per household), CPU ms per household: "
              f"{moved['cpu_ms_per_household']['nats_py']:.3f} with plain nats-py, "
              f"{moved['cpu_ms_per_household']['ours']:.3f} with the relay's publisher and the services' fetch loop")
    out.print(peer_line(figures), markup=False)
    if db_url is not None:
        figures["postgresql"] = _with_progress(lambda progress: compare_postgresql(
            households, db_url, workdir, progress, instances=instances, relays=relays))
        for line in postgresql_lines(figures["postgresql"]):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    print(json.dumps(figures), flush=True)


@bench_app.command("all")
def bench_all(
    store_events: Annotated[int, typer.Option(help="Events for the store benchmark.")] = 1_000_000,
    batch: Annotated[int, typer.Option(help="Events per append transaction (store benchmark).")] = 1000,
    rebuild_events: Annotated[int, typer.Option(help="Events for the rebuild benchmark.")] = 1_000_000,
    households: Annotated[int, typer.Option(help="Households for the pipeline benchmark.")] = 20_000,
    runs: Annotated[int, typer.Option(min=1, help="Runs of each benchmark; the summary takes the run with the median ratio.")] = 1,
    pipeline_runs: Annotated[int, typer.Option(min=1, help="Runs of the pipeline benchmark (its figures move most from run to run).")] = 5,
    only: Annotated[list[str] | None, typer.Option(help="Run only these (store, rebuild, pipeline); repeatable.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where to write results.json and results.md.")] = Path("bench"),
    machine: Annotated[str | None, typer.Option(help="A name for this machine in the summary (default: its host name).")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Where to put the temporary databases.")] = None,
    pg_url: Annotated[str | None, typer.Option("--pg-url", help="A PostgreSQL server for pipeline_postgresql (a database of its own is created there and dropped); skipped without it.")] = None,
    pg_instances: Annotated[int, typer.Option(min=1, help="Instances of each service (and relays) in pipeline_postgresql.")] = 2,
) -> None:
    """Run the store, rebuild and pipeline benchmarks (each measuring its raw reference in the same
    run), and pipeline_postgresql when --pg-url is given and answers, and write one summary:
    OUT_DIR/results.json (machine, figures, raw references, ratios, targets, met or not) and
    OUT_DIR/results.md (a table). Exit 1 when a benchmark failed."""
    from guanhuai.bench.summary import ORDER, run_all

    unknown = set(only or ()) - set(ORDER)
    if unknown:
        raise typer.BadParameter(f"unknown benchmark(s): {', '.join(sorted(unknown))}", param_hint="--only")
    summary = run_all(_with_progress, store_events=store_events, batch=batch,
                      rebuild_events=rebuild_events, households=households, runs=runs, workdir=workdir,
                      pipeline_runs=pipeline_runs, pg_url=pg_url, pg_instances=pg_instances,
                      out_dir=out_dir, label=machine, only=tuple(only or ORDER),
                      say=lambda text: print(text, file=sys.stderr, flush=True))
    print((out_dir / "results.md").read_text(encoding="utf-8"))
    print(f"written: {out_dir / 'results.json'}, {out_dir / 'results.md'}")
    print(json.dumps({"results": str(out_dir / "results.json"), "all_met": summary["all_met"]}), flush=True)
    if any("error" in b for b in summary["benchmarks"].values()):
        raise typer.Exit(1)


@app.command("up")
def up_command(
    nats_url: Annotated[str | None, typer.Option("--nats-url", help="An existing NATS (cluster), comma-separated. Default: start an embedded nats-server.")] = None,
    db_url: DbUrl = None,
    port: Annotated[int | None, typer.Option(help="HTTP port of the reporting API and dashboard (default 8640).")] = None,
) -> None:
    """Run everything: (embedded NATS,) the relay, enrollment, subsidy, claims, reporting and the
    HTTP API, each its own process, restarted if it stops, until Ctrl-C or SIGTERM."""
    import signal as signals
    import time

    from guanhuai.stack import Stack

    settings = Settings(**({"db_url": db_url} if db_url else {}))
    stack = Stack(settings.data_dir, settings.database_url, nats_url=nats_url, api_port=port or settings.api_port).start()
    out.print(f"guanhuai is up.  NATS {stack.nats_url}   log {settings.database_url}")
    out.print(f"dashboard {stack.dashboard_url}   API {stack.dashboard_url.replace('/dashboard', '/openapi.json')}   logs {stack.logs}")
    stopping = []
    for sig in (signals.SIGINT, signals.SIGTERM):
        signals.signal(sig, lambda *_: stopping.append(True))
    try:
        while not stopping:
            for name in stack.exited():
                err.print(f"[yellow]{name} stopped (exit {stack.processes[name].returncode}); restarting[/]")
                stack.restart(name)
            time.sleep(1)
    finally:
        out.print("stopping…")
        stack.stop()


@app.command("publish")
def publish_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Events as JSON lines (.jsonl), or a household roster (.csv / .xlsx, see `guanhuai roster-template`).")],
    source: Annotated[str, typer.Option(help="Who is sending (recorded as the events' source), e.g. mingxi-county.")],
    kind_choice: Annotated[Kind | None, typer.Option("--kind", help="Producer kind (default: from each event's type).")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for each household's outcome (policy or rejection) in the log, print the tally and write the roster's result file.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the outcomes before giving up on those still unanswered.")] = 60,
    nats_url: NatsUrl = None,
    db_url: DbUrl = None,
    connect_timeout: ConnectTimeout = 5,
) -> None:
    """Publish events as a county or insurer system would. Bad lines and rows are reported with
    their number and reason and the good ones go through; publishing the same file again
    publishes nothing twice. Then (unless --no-wait) every household's outcome is read from the
    event log: a tally is printed, a roster gets its result file beside it (`roster.结果.xlsx`:
    each row's 状态, 保单号, 参保人数, 未参保成员及原因, 拒绝原因), and the exit code is 1 when any
    row was refused or rejected, or is still unanswered."""
    from guanhuai.errors import USAGE, Expected
    from guanhuai.ops import nats_tls_for, nats_url_for, publish_events
    from guanhuai.rosters import read_events

    kind = kind_choice.value if kind_choice else None
    if file.suffix.lower() not in (".jsonl", ".json", ".ndjson", ".csv", ".xlsx", ".xlsm"):
        raise Expected(f"{file.name}：请给出 .jsonl（事件）、.csv 或 .xlsx（花名册）",
                       f"{file.name}: give .jsonl (events), .csv or .xlsx (a household roster)", USAGE)
    parsed = read_events(file, source)
    for problem in parsed.problems:
        said = mask_in_text_(problem.reason)
        if not said.startswith("第"):  # a roster's problems name their line already; a .jsonl line's do not
            said = f"第 {problem.line} 行 / line {problem.line}: {said}"
        err.print(said, style="red", markup=False, highlight=False, soft_wrap=True)
    settings = Settings()
    new = duplicate = acknowledged = 0
    if parsed.events:
        from shared.events.relay import PublishFailed

        def done(n: int) -> None:
            nonlocal acknowledged
            acknowledged = n
            bar.update(task, completed=n)

        with _progress() as bar:
            task = bar.add_task("published", total=len(parsed.events))
            try:
                new, duplicate = asyncio.run(publish_events(nats_url_for(settings, nats_url), parsed.events, kind,
                                                            nats_tls_for(settings, nats_url), progress=done,
                                                            connect_timeout=connect_timeout))
            except PublishFailed as exc:
                err.print(f"[red]publishing stopped[/]: {mask_in_text_(str(exc))}; {acknowledged} of "
                          f"{len(parsed.events)} were acknowledged before. Publishing the file again sends the "
                          "rest (what NATS has already is not stored twice).")
                raise typer.Exit(1) from None
    out.print(f"{file.name}: {new} published, {duplicate} already published, {len(parsed.problems)} refused")
    if wait:
        _answer_rows(file, parsed, kind, timeout, _db_url(db_url))
    if parsed.problems:
        raise typer.Exit(1)


def _answer_rows(file: Path, parsed, kind: str | None, timeout: float, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """Wait for the households' outcomes in the log, write a roster's result file, print the tally;
    exit 1 when a household was rejected or is unanswered (the caller exits 1 on refused rows)."""
    from guanhuai.ops import kind_of
    from guanhuai.outcomes import households, wait_for_outcomes
    from guanhuai.rosters import read_sheet, row_results, tally, write_result

    sent = households(parsed.events)
    outcomes = {}
    if sent:
        with _progress() as bar:
            task = bar.add_task("answered", total=len(sent))
            try:
                outcomes = asyncio.run(wait_for_outcomes(db_url, kind_of(sent[0], kind), sent, timeout,
                                                         progress=lambda n: bar.update(task, completed=n)))
            except Exception as exc:  # noqa: BLE001 - one line for people, whatever the database says
                err.print(f"[red]无法读取事件日志 / cannot read the event log[/] ({terminal_text(mask_in_text_(str(exc)))[:300]}): "
                          "run beside the stack with GUANHUAI_DB_URL (or --db-url), or publish with --no-wait")
                raise typer.Exit(1) from None
    if file.suffix.lower() in (".csv", ".xlsx", ".xlsm"):
        written = write_result(file, read_sheet(file), row_results(parsed, outcomes))
        out.print(f"结果 / result: {written}", soft_wrap=True)
    counts = tally(parsed, sent, outcomes)
    out.print(counts.line(), soft_wrap=True)
    if counts.unanswered:
        err.print(f"[red]{counts.unanswered} 户在 {timeout:g} 秒内未得到答复 / {counts.unanswered} households still "
                  f"unanswered after {timeout:g} s[/]: are the services running (`guanhuai status`)? Publishing the "
                  "file again later sends nothing twice and waits again.")
    if counts.rejected or counts.unanswered:
        raise typer.Exit(1)


def mask_in_text_(text: str) -> str:
    from shared.domain.identity import mask_in_text

    return mask_in_text(text)


@app.command("roster-template")
def roster_template(
    path: Annotated[Path, typer.Argument(dir_okay=False, help="Where to write it: .xlsx (with an example sheet, a 说明 sheet and dropdowns) or .csv (the headings).")],
    db_url: Annotated[str | None, typer.Option("--db-url", help="A guanhuai database: the 乡镇 dropdown lists its registered townships.")] = None,
) -> None:
    """Write an empty household roster (花名册) in the layout `guanhuai publish` reads."""
    from guanhuai.rosters import TEMPLATE_SUFFIXES, registered_townships, write_template

    if path.suffix.lower() not in TEMPLATE_SUFFIXES:
        err.print(f"{path.name}：模板只能写成 .xlsx 或 .csv / a template is .xlsx or .csv", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    townships = None
    if db_url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
            err.print(f"没有这个数据库 / no such database: {url.database}", markup=False, soft_wrap=True)
            raise typer.Exit(1)
        try:
            townships = asyncio.run(registered_townships(db_url))
        except (SQLAlchemyError, OSError) as exc:
            err.print(f"读不到已登记的乡镇 / cannot read the registered townships: {type(exc).__name__}", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
    write_template(path, townships)
    out.print(f"wrote {path}" + (f" (乡镇: {len(townships)})" if townships else ""), markup=False, soft_wrap=True)


@app.command("status")
def status_command(
    nats_url: NatsUrl = None,
    db_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    connect_timeout: ConnectTimeout = 5,
) -> None:
    """Each service's consumer lag, the log's last position, what the relay has published,
    dead-letter counts, and health. Exit 1 when something is unhealthy."""
    from rich.table import Table

    from guanhuai.ops import status

    settings = Settings(**({"db_url": db_url} if db_url else {}))
    result = asyncio.run(status(settings, nats_url, connect_timeout))
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        out.print(f"log head {result['log_head']}  published to NATS {result.get('published_to_nats', '?')}  "
                  f"relay lag {result.get('relay_lag', '?')}  NATS {result['nats_url']}")
        table = Table("consumer", "pending", "ack pending", "redelivered", "given up", "dead letters")
        for name, info in result["consumers"].items():
            letters = str(result["dead_letters"].get(name, 0))
            if isinstance(info, dict):
                table.add_row(name, str(info["pending"]), str(info["ack_pending"]), str(info["redelivered"]),
                              str(info["given_up"]), letters)
            else:
                table.add_row(name, info, "", "", "", letters)
        out.print(table)
        if result.get("given_up_not_retried"):
            out.print(f"[red]{result['given_up_not_retried']} inputs JetStream gave up on (a crash loop) are dead "
                      "letters not sent again: guanhuai dlq list, then guanhuai dlq retry ID[/]")
        for name, state in result["components"].items():
            out.print(f"{name}: {state}")
        out.print("healthy" if result["healthy"] else "[red]NOT healthy[/]")
    if not result["healthy"]:
        raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Dead letters, newest first (resident ID numbers masked)."""
    from rich.table import Table

    from guanhuai.ops import list_dead_letters

    letters = asyncio.run(list_dead_letters(Settings(), consumer, limit))
    if as_json:
        print(json.dumps(letters, ensure_ascii=False))
        return
    from shared.events.reasons import zh

    table = Table("id", "received", "consumer", "subject", "reason", "原因", "detail")
    for d in letters:
        table.add_row(str(d["id"]), d["received_at"][:19], d["consumer"], terminal_text(d["subject"]), d["reason"],
                      zh(d["reason"]), terminal_text(d["detail"][:80]))
    out.print(table)


@dlq_app.command("show")
def dlq_show(
    letter_id: Annotated[int, typer.Argument(help="Dead letter id (from `dlq list`).")],
    raw: Annotated[bool, typer.Option("--raw", help="Show the original bytes unmasked (for auditors).")] = False,
) -> None:
    """One dead letter: headers, reason and the original body."""
    from guanhuai.ops import show_dead_letter

    letter = asyncio.run(show_dead_letter(Settings(), letter_id, raw))
    if letter is None:
        err.print(f"no dead letter {letter_id}")
        raise typer.Exit(1)
    print(json.dumps(letter, ensure_ascii=False, indent=2))


@dlq_app.command("retry")
def dlq_retry(letter_id: Annotated[int, typer.Argument(help="Dead letter id.")], nats_url: NatsUrl = None,
              connect_timeout: ConnectTimeout = 5) -> None:
    """Publish a dead letter's original bytes again to its subject (after fixing what refused it);
    the dead letter stays on record and the retry is recorded beside it."""
    from guanhuai.ops import retry_dead_letter

    msg_id = asyncio.run(retry_dead_letter(Settings(), letter_id, nats_url, connect_timeout))
    out.print(f"dead letter {letter_id} published again as {msg_id}")


@app.command("replay")
def replay_command(
    until: Annotated[str, typer.Option(help="A date (end of that day, CST) or a date-time.")],
    by: Annotated[By, typer.Option(help="occurred (when it happened) or recorded (when the log knew it).")] = By.recorded,
    event_type: Annotated[list[str] | None, typer.Option("--type", help="Only these event types.")] = None,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    mask: Annotated[bool, typer.Option(help="Mask resident ID numbers in the output.")] = False,
    db_url: DbUrl = None,
) -> None:
    """Auditors: print the log's events as JSON lines up to a date - as the log knew it then
    (--by recorded), or what had happened by then (--by occurred). Counts go to stderr."""
    from guanhuai.ops import replay_lines
    from services.reporting.safe import json_line
    from shared.events.audit import log_head
    from shared.events.store import EventStore

    cut = _instant_or_exit("--until", until)
    by = by.value  # type: ignore[assignment]

    async def main() -> tuple[int, str]:
        store = await _open_log(db_url)
        count = 0
        try:
            # The prefix read is fixed first, so the head printed is the one the output came from.
            last = await store.position_at(cut) if by == "recorded" else await store.head_position()
            async for batch in store.read_all(until_recorded=cut if by == "recorded" else None, until_position=last,
                                              event_types=event_type or None):
                for event in batch:
                    if (by == "occurred" and event.occurred_at >= cut) or (stream and event.stream_id != stream):
                        continue
                    sys.stdout.write(json_line(replay_lines(event, mask)) + "\n")
                    count += 1
            return count, str(await log_head(store, last))
        finally:
            await store.close()

    count, head = asyncio.run(main())
    err.print(f"{count} events {'recorded' if by == 'recorded' else 'that happened'} up to {cut.isoformat()}")
    err.print(f"日志头 / log head: {head}", highlight=False, soft_wrap=True)


@app.command("config")
def config_command() -> None:
    """The settings in force (environment GUANHUAI_*, then guanhuai.env), secrets masked; with a
    running `guanhuai up`, its NATS address and API port (running_stack)."""
    from guanhuai.ops import settings_in_force

    print(json.dumps(settings_in_force(Settings()), ensure_ascii=False, indent=2, default=str))


@app.command("demo")
def demo_command(
    data_dir: Annotated[Path, typer.Option(help="Where the log, the NATS store and the logs are kept.")] = Path("data"),
    share: Annotated[float, typer.Option(help="Share of each township's government-paid target to enrol.")] = 0.6,
) -> None:
    """The whole system on embedded parts: start NATS and every service, publish the Mingxi 2020
    targets, a subsidy plan, a year of households and a season of claims, wait until everything
    has caught up, print the township report, and stop. Running it again changes nothing."""
    from guanhuai.demo import run
    from services.reporting.exports import rich_table

    report, stack = _with_progress(lambda progress: run(data_dir, progress, government_share=share, self_share=share * 5 / 6))
    Console(width=max(out.width, 200)).print(rich_table(report, compact=True))
    out.print(f"\n数据 / data: event log {data_dir / 'guanhuai.db'} (SQLite; tables events and report_*), "
              f"NATS store {data_dir / 'nats'}, service logs {stack.logs}")
    out.print("看板 / dashboard: run [bold]guanhuai up[/] and open the dashboard address it prints "
              "(http://127.0.0.1:8640/dashboard by default); or [bold]guanhuai report --year 2020 --format xlsx --out report.xlsx[/]")


def _parse_instant(text: str):  # type: ignore[no-untyped-def]
    """A date (end of that day, China Standard Time) or an ISO date-time (CST unless it says)."""
    from datetime import date, datetime

    from shared.domain.calendar import CST, end_of_day

    try:
        return end_of_day(date.fromisoformat(text))
    except ValueError:
        instant = datetime.fromisoformat(text)
        return instant if instant.tzinfo else instant.replace(tzinfo=CST)


def _instant_or_exit(option: str, text: str):  # type: ignore[no-untyped-def]
    """:func:`_parse_instant`, or one clear line and exit 2 for what is no instant of this calendar."""
    from datetime import date, datetime

    from services.reporting.safe import cutoff_problem

    parsed: date | None = None
    for kind in (date, datetime):  # as _parse_instant reads it
        try:
            parsed = kind.fromisoformat(text)
            break
        except ValueError:
            continue
    problem = (f"{option} {text!r}: 不是日期或时间 / not a date or date-time (e.g. 2024-04-30 or 2024-04-30T18:00)"
               if parsed is None else cutoff_problem(option, parsed))
    if problem:
        err.print(problem, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2)
    return _parse_instant(text)


@app.command("report")
def report_command(
    year: Annotated[int, typer.Option(help="Programme year (投保年度).")],
    township: Annotated[str | None, typer.Option(help="One township, by name (城关) or code.")] = None,
    area: Annotated[str | None, typer.Option(help="Only this area (a province, city, county or township, by name or code), e.g. 明溪县.")] = None,
    level: Annotated[str | None, typer.Option(help="Rows of this level: province, city, county or township (default: the level below --area; townships without it).")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Only what had happened by the end of this date (CST), e.g. 2023-09-30.")] = None,
    known_at: Annotated[str | None, typer.Option("--known-at", help="What the log knew at this time (recorded_at), e.g. 2024-04-30T18:00.")] = None,
    position: Annotated[int | None, typer.Option(help="What the log knew up to this position.")] = None,
    from_log: Annotated[bool, typer.Option("--from-log", help="Compute from the log, not the read model tables.")] = False,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="table (Chinese headings), json, csv (for Excel: BOM, Chinese headings, yuan), csv-raw (for tools: column names, fen) or xlsx.")] = "table",  # type: ignore[assignment]
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file (required for xlsx).")] = None,
    db_url: DbUrl = None,
    as_json: AsJson = False,
) -> None:
    """Township and county figures of a programme year: targets, policies by payer, completion,
    premium, subsidies, claims and the loss ratio (stated with its numerator and denominator).
    With --as-of / --known-at / --position the report is computed from the log as of then.
    With --area / --level the rows are areas of that level, each the exact sum of its townships."""
    from services.reporting.report import AreaProblem
    from services.reporting.rollup import area_report
    from shared.events.store import EventStore

    fmt = "json" if as_json else ReportFormat(fmt).value  # type: ignore[assignment]
    if fmt not in ("table", "json", "csv", "csv-raw", "xlsx"):
        err.print("--format is one of table, json, csv, csv-raw, xlsx")
        raise typer.Exit(2)
    if fmt == "xlsx" and out_file is None:
        err.print("xlsx needs --out FILE.xlsx")
        raise typer.Exit(2)

    occurred_before = _instant_or_exit("--as-of", as_of) if as_of else None
    until_recorded = _instant_or_exit("--known-at", known_at) if known_at else None

    async def main():  # type: ignore[no-untyped-def]
        store = await _open_log(db_url)
        try:
            return await area_report(
                store, year, area=area, level=level, township=township, occurred_before=occurred_before,
                until_recorded=until_recorded, until_position=position, from_log=from_log,
            )
        finally:
            await store.close()

    try:
        report, warning = asyncio.run(main())
    except AreaProblem as exc:
        err.print(terminal_text(str(exc)), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if warning:
        err.print(f"[yellow]{warning}[/]")
    if fmt == "xlsx":
        from services.reporting.exports import write_xlsx

        write_xlsx(report, out_file)  # type: ignore[arg-type]
        err.print(f"wrote {out_file}")
        return
    if fmt == "table":
        from services.reporting.exports import rich_table

        table = rich_table(report)
        # The table's own width (about 270 columns, 295 with an area's own target): narrower, rich cuts every cell short.
        width = max(Console(width=1000).measure(table.renderables[0]).maximum, 120)
        console = Console(file=out_file.open("w", encoding="utf-8"), width=width) if out_file else Console(width=max(out.width, width))
        console.print(table)
        return
    if fmt == "csv":
        from services.reporting.exports import csv_for_people

        data = csv_for_people(report)  # bytes with a BOM, to a file or a redirect alike
        if out_file:
            out_file.write_bytes(data)
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
        return
    text = report.json_text() if fmt == "json" else report.csv()
    if out_file:
        out_file.write_text(text, encoding="utf-8", newline="")  # the CSV's own CRLF, untranslated
    else:
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))


@app.command("rebuild")
def rebuild_command(db_url: DbUrl = None) -> None:
    """Rebuild the reporting read models from the event log alone: a new version built beside the
    serving one (which keeps serving, and the live projection keeps it current), then switched in,
    in one transaction. The reporting service may run meanwhile."""
    from services.reporting.storage import rebuild, serving_version
    from shared.events.store import EventStore

    async def main() -> int:
        store = await _open_log(db_url)
        try:
            with _progress() as bar:
                task = bar.add_task("rebuilding read models", total=await store.head_position())
                state = await rebuild(store, on_progress=lambda n: bar.update(task, completed=n))
            return state.position, await store.read(serving_version)
        finally:
            await store.close()

    position, version = asyncio.run(main())
    out.print(f"read models rebuilt from the log up to position {position} and switched in (version {version})")


def main() -> None:
    from guanhuai.errors import Expected, debugging
    from shared.events.logs import configure_logging

    # Library lines and warnings of any command go through the services' masking; people read
    # the commands' own output, so only warnings and errors.
    configure_logging("cli", level="WARNING")
    try:
        # Not standalone: usage errors come here, to be said in one line rather than a box.
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.TyperException as exc:  # click's exceptions, as typer ships them
        if type(exc).__name__ == "NoArgsIsHelpError":  # `guanhuai dlq` alone: its help, as before
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)
        if debugging():
            raise
        context = getattr(exc, "ctx", None)
        where = f" ({context.command_path} --help)" if context is not None and exc.exit_code == 2 else ""
        _say_one_line(f"用法错误 / usage error: {exc.format_message()}{where}" if exc.exit_code == 2
                      else f"错误 / error: {exc.format_message()}")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Expected as expected:
        if debugging():
            raise
        _say_one_line(expected.line)
        sys.exit(expected.code)
    sys.exit(code if isinstance(code, int) else 0)


def _say_one_line(text: str) -> None:
    err.print(" ".join(text.split()), markup=False, highlight=False, soft_wrap=True)
