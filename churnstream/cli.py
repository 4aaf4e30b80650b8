"""The ``churnstream`` command: one root app on which every sub-command is mounted.

The commands live in :mod:`churnstream.commands` (one module each); the local stack's in
:mod:`churnstream.commands.infra_command` and :mod:`churnstream.demo`.
"""

from __future__ import annotations

import typer

from churnstream.commands.api_command import api_command
from churnstream.commands.archive_command import archive_app
from churnstream.commands.drift_command import drift_command
from churnstream.commands.import_command import import_app
from churnstream.commands.infra_command import infra_app
from churnstream.commands.models_command import models_app
from churnstream.commands.monitor_command import monitor_command
from churnstream.commands.produce_command import produce_command
from churnstream.commands.replay_command import replay_command
from churnstream.commands.retrain_command import retrain_command
from churnstream.commands.risk_command import risk_command
from churnstream.commands.schema_command import schema_app
from churnstream.commands.simulate_command import simulate_command
from churnstream.commands.targets_command import targets_command
from churnstream.commands.train_command import train_command
from churnstream.commands.verify_command import verify_command
from churnstream.commands.worker_command import worker_command
from churnstream.demo import demo
from churnstream.help_text import ParagraphHelpGroup

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


# In the order `churnstream --help` lists them: commands, then groups.
COMMANDS = {
    "produce": produce_command, "simulate": simulate_command, "demo": demo,
    "worker": worker_command, "risk": risk_command, "targets": targets_command,
    "train": train_command, "api": api_command, "drift": drift_command,
    "monitor": monitor_command, "retrain": retrain_command, "replay": replay_command,
    "verify": verify_command,
}  # fmt: skip
GROUPS = {
    "infra": (infra_app, "Start, stop and inspect the local Kafka + Redis."),
    "schema": (schema_app, "The published JSON Schema of the events."),
    "import": (import_app, "Import your own data files as canonical events."),
    "models": (models_app, "The model registry: list, show, promote, roll back."),
    "archive": (archive_app, "Look into the event archive and compact it."),
}
for name, command in COMMANDS.items():
    app.command(name)(command)
for name, (group, summary) in GROUPS.items():
    app.add_typer(group, name=name, help=summary)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
