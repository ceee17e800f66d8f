"""``feedray demo``: the platform from an empty stack to a personalised feed, timed step by step.

Each step is one ``feedray`` command run as a child process, its output in
``<state_dir>/logs/demo/<step>.log`` (Ray Data progress bars off), and one line on the console
with its elapsed time; a failed step prints the end of its log and stops the demo. The world
and the training lengths default to ``settings.demo``. Once the feed is served, an example
request for a user with history in the online store must answer a full feed with
``degraded: []``. Then a closing canary: a ranker trained for longer
(``demo.challenger_ranking_epochs``) goes through ``feedray canary run`` for
``demo.canary_window_h`` while ``feedray audience --feeds-from`` has the world's users ask for
feeds and respond to them; its decision, reasons and report path are printed. The demo ends
with the live loop running (``feedray up`` starts the live services).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
import yaml

from app.config import FeedraySettings, get_settings
from app.stack.live import feedray_argv

SERVE_CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"


@dataclass(frozen=True)
class Step:
    name: str
    arguments: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # A command that runs while the step runs (its output in the step's ``-alongside`` log),
    # interrupted (SIGINT) once the step has finished.
    alongside: list[str] | None = None


def demo_steps(
    settings: FeedraySettings, users: int, items: int, days: float, creators: int
) -> list[Step]:
    """The demo's commands, in order."""
    demo = settings.demo
    held_out = {"FEEDRAY_MODELS__TRAINING__EVAL_DAYS": str(demo.eval_days)}
    world = ["--users", str(users), "--items", str(items), "--creators", str(creators),
             "--days", str(days)]  # fmt: skip
    servers = ["--only", "redis", "--only", "kafka", "--only", "ray", "--only", "mlflow"]
    return [
        Step("stack up", ["up", *servers]),
        Step(
            "simulate",
            ["simulate", *world, "--start-now", "--publish-catalogue", "--sink", "kafka"],
        ),
        Step("catalogue", ["catalogue", "--until-idle"]),
        Step("collect", ["collect", "--workers", "2", "--until-idle"]),
        Step("trending", ["trending", "--once"]),
        Step("ingest", ["ingest", "--once"]),
        Step(
            "train retrieval",
            ["train", "retrieval", "--epochs", str(demo.retrieval_epochs)],
            held_out,
        ),
        Step("train ranking", ["train", "ranking", "--epochs", str(demo.ranking_epochs)], held_out),
        Step("train index", ["train", "index", "--alias", "champion"]),
        Step("serve", ["serve"]),
    ]


def closing_steps(settings: FeedraySettings, challenger: int, base_url: str) -> list[Step]:
    """After the example request: the canary of ranker version ``challenger`` under a
    responding audience, then the live loop."""
    demo = settings.demo
    window_s = 3600.0 * demo.canary_window_h
    canary = ["canary", "run", "--ranking-version", str(challenger), "--share",
              str(demo.canary_share), "--window-h", str(demo.canary_window_h), "--experiment",
              f"demo-canary-k{challenger}"]  # fmt: skip
    audience = ["audience", "--feeds-from", base_url, "--max-seconds", str(2 * window_s + 600)]
    return [
        Step("canary run", canary, alongside=audience),
        Step("live services", ["up"]),
        Step("status", ["status"]),
    ]


def challenger_training(settings: FeedraySettings) -> Step:
    """The challenger ranker: the champion's recipe trained for more epochs."""
    epochs = str(settings.demo.challenger_ranking_epochs)
    held_out = {"FEEDRAY_MODELS__TRAINING__EVAL_DAYS": str(settings.demo.eval_days)}
    return Step("train challenger", ["train", "ranking", "--epochs", epochs], held_out)


def step_log(log_dir: Path, index: int, step: Step) -> Path:
    return log_dir / f"{index:02d}-{step.name.replace(' ', '-')}.log"


def run_step(step: Step, index: int, total: int, log_dir: Path) -> float:
    """Run one step to its log; print its line; raise ``typer.Exit`` when it fails."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = step_log(log_dir, index, step)
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", **step.env}
    started = time.perf_counter()
    with open(log_path, "wb") as log, _alongside(step, log_path, env):
        code = subprocess.run(
            feedray_argv(*step.arguments), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, check=False,
        ).returncode  # fmt: skip
    elapsed = time.perf_counter() - started
    label = f"[{index:2d}/{total}] {step.name}"
    typer.echo(f"{label:28s} {elapsed:7.1f}s  {'ok' if code == 0 else f'FAILED (exit {code})'}")
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        typer.echo("\n".join(["    " + line for line in tail]), err=True)
        typer.echo(f"feedray demo: step `{step.name}` failed; full log: {log_path}", err=True)
        raise typer.Exit(code=1)
    return elapsed


@contextmanager
def _alongside(step: Step, log_path: Path, env: dict[str, str]) -> Iterator[None]:
    """Run ``step.alongside`` (if any) for the duration of the block, then interrupt it."""
    if step.alongside is None:
        yield
        return
    with open(log_path.with_name(log_path.stem + "-alongside.log"), "wb") as log:
        process = subprocess.Popen(
            feedray_argv(*step.alongside), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            yield
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def newest_version(settings: FeedraySettings, name: str) -> int:
    """The highest registered version of model ``name``."""
    from app import registry

    return max(int(v["version"]) for v in registry.versions(registry.tracking_uri(settings), name))


def print_canary_outcome(log_path: Path) -> None:
    """The canary run's decision, its reasons and where its report is, from its log."""
    from app.experiments.canary import summary_from_output

    summary = summary_from_output(log_path.read_text(errors="replace"))
    typer.echo(f"canary: {summary['outcome']} (decision {summary['decision']})")
    report = summary.get("report")
    if report:
        verdict = Path(report).parent / "verdict.json"
        if verdict.is_file():
            for reason in json.loads(verdict.read_text()).get("reasons", []):
                typer.echo(f"  - {reason}")
        typer.echo(f"  report: {report}")


def user_with_history(
    settings: FeedraySettings, n_users: int, scan: int = 2_000
) -> tuple[str, int]:
    """The user among the first ``scan`` with the most recently played items in the online store."""
    import redis

    from app.features.online_store import OnlineStore

    store = OnlineStore(redis.Redis(**settings.redis.client_kwargs()), settings.online_store)
    ids = [f"u{k}" for k in range(min(n_users, scan))]
    with store.client.pipeline(transaction=False) as pipe:
        for user_id in ids:
            pipe.zcard(store.keys.user_recent(user_id))
        counts = pipe.execute()
    best = max(range(len(ids)), key=lambda k: (counts[k], -k))
    return ids[best], int(counts[best])


def feed(base_url: str, user_id: str, limit: int, timeout_s: float = 30.0) -> dict:
    """One feed request; exit 1 with the reason when the service does not answer 200."""
    url = f"{base_url}/api/v1/content/feed?user_id={user_id}&limit={limit}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as error:
        typer.echo(f"feedray demo: GET {url} failed: {error}", err=True)
        raise typer.Exit(code=1) from None


def serve_url() -> str:
    http = (yaml.safe_load(SERVE_CONFIG.read_text()) or {}).get("http_options") or {}
    return f"http://127.0.0.1:{http.get('port', 8000)}"


def example_request(settings: FeedraySettings, n_users: int, base_url: str) -> None:
    """Ask a feed for a user with history; exit 1 unless it is full and nothing degraded."""
    limit = settings.demo.feed_limit
    user_id, played = user_with_history(settings, n_users)
    if played == 0:
        typer.echo("feedray demo: no user has history in the online store", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"example request ({user_id}, {played} items in its recent history):")
    typer.echo(f"  curl '{base_url}/api/v1/content/feed?user_id={user_id}&limit={limit}'")
    # The first answers after a deploy may still time out in a stage while replicas warm up
    # on a busy host: each such attempt is shown, and the last one decides.
    for attempt in range(1, settings.demo.feed_attempts + 1):
        answer = feed(base_url, user_id, limit)
        full = not answer.get("degraded") and len(answer.get("items") or []) == limit
        if full or attempt == settings.demo.feed_attempts:
            break
        typer.echo(f"  attempt {attempt}: degraded {answer.get('degraded')}; asking again")
        time.sleep(1.0)
    typer.echo(json.dumps(answer, indent=2))
    if answer.get("degraded") or len(answer.get("items") or []) < limit:
        typer.echo(
            f"feedray demo: the feed for {user_id} is not a full personalised feed: "
            f"degraded {answer.get('degraded')}, {len(answer.get('items') or [])} of {limit} items",
            err=True,
        )
        raise typer.Exit(code=1)


def demo_command(
    users: Annotated[
        int | None, typer.Option(help="Users in the world (default demo.users).")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Items in the world (default demo.items).")
    ] = None,
    days: Annotated[
        float | None, typer.Option(help="Simulated days of history (default demo.days).")
    ] = None,
    creators: Annotated[int | None, typer.Option(help="Creators (default demo.creators).")] = None,
) -> None:
    """Run the demo: stack, simulated world, pipelines, training, serving, live loop, a feed."""
    settings = get_settings()
    users = users or settings.demo.users
    items = items or settings.demo.items
    days = days or settings.demo.days
    creators = creators or settings.demo.creators
    typer.echo(f"feedray demo: {users:,} users, {items:,} items, {days:g} days; logs in "
               f"{settings.state_dir / 'logs' / 'demo'}")  # fmt: skip
    steps = demo_steps(settings, users, items, days, creators)
    base_url = serve_url()
    total = len(steps) + 2 + len(closing_steps(settings, 0, base_url))
    log_dir = settings.state_dir.expanduser().resolve() / "logs" / "demo"
    started = time.perf_counter()
    for index, step in enumerate(steps, start=1):
        run_step(step, index, total, log_dir)
    step_started = time.perf_counter()
    example_request(settings, users, base_url)
    typer.echo(f"[{len(steps) + 1:2d}/{total}] {'example request':21s} "
               f"{time.perf_counter() - step_started:7.1f}s  ok")  # fmt: skip
    run_step(challenger_training(settings), len(steps) + 2, total, log_dir)
    challenger = newest_version(settings, settings.models.ranking_model_name)
    closing = closing_steps(settings, challenger, base_url)
    for index, step in enumerate(closing, start=len(steps) + 3):
        run_step(step, index, total, log_dir)
        if step.alongside is not None:
            print_canary_outcome(step_log(log_dir, index, step))
    typer.echo(f"feedray demo: done in {time.perf_counter() - started:.1f}s; the live loop keeps "
               "running (`feedray status`), `feedray down` stops everything")  # fmt: skip
    sys.stdout.flush()
