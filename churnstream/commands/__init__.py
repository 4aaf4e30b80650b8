"""The ``churnstream`` commands, one module per command: ``<name>_command.py`` holds the
command ``<name>_command`` (a group: ``<name>_app``, its sub-commands ``<sub>_command``).

Commands are thin: they parse options, call the plain functions of ``core``, ``stream``,
``serving``, ``offline`` and ``monitoring``, and print. Each imports its heavy dependencies
(pandas, scikit-learn, Faust, uvicorn, ...) inside the function, so ``churnstream --help``
starts fast. What several commands share is in :mod:`.shared`. The local stack's commands
are :mod:`churnstream.commands.infra_command` (``infra``) and :mod:`churnstream.demo` (``demo``);
:mod:`churnstream.cli` mounts them all.
"""
