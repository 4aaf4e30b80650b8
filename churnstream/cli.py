"""The ``churnstream`` command: one root app on which every sub-command is mounted."""

from __future__ import annotations

import typer

from churnstream.archive import archive_app
from churnstream.demo import demo
from churnstream.drift import drift
from churnstream.help_text import ParagraphHelpGroup
from churnstream.infra.cli import infra_app
from churnstream.monitor import monitor, retrain_command
from churnstream.produce import produce
from churnstream.risk import risk
from churnstream.schema import schema_app
from churnstream.targets import targets
from churnstream.verify import verify_command
from offline.cli import simulate
from offline.import_cli import import_app
from offline.models_cli import models_app
from offline.replay.cli import replay
from offline.train_cli import train
from serving.cli import api
from stream.cli import worker

app = typer.Typer(
    name="churnstream",
    help="Real-time churn scoring on an event stream: Kafka in, live risk scores out.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    cls=ParagraphHelpGroup,
)


@app.callback()
def _configure() -> None:
    """Real-time churn scoring on an event stream: Kafka in, live risk scores out.

    Configuration comes from environment variables (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL,
    CHURN_*) or a .env file; see `churnstream schema --help` for the event contract.
    """
    from core.logging import configure_logging
    from core.settings import get_settings

    configure_logging(get_settings())


app.add_typer(infra_app, name="infra", help="Start, stop and inspect the local Kafka + Redis.")
app.add_typer(schema_app, name="schema", help="The published JSON Schema of the events.")
app.add_typer(import_app, name="import", help="Import your own data files as canonical events.")
app.add_typer(models_app, name="models", help="The model registry: list, show, promote, roll back.")
app.command("produce")(produce)
app.command("simulate")(simulate)
app.command("demo")(demo)
app.command("worker")(worker)
app.command("risk")(risk)
app.command("targets")(targets)
app.command("train")(train)
app.command("api")(api)
app.command("drift")(drift)
app.command("monitor")(monitor)
app.command("retrain")(retrain_command)
app.command("replay")(replay)

app.command("verify")(verify_command)
app.add_typer(archive_app, name="archive", help="Look into the event archive and compact it.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
