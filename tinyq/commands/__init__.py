"""The command-line commands, one module per command (or pair of related commands).

Each module registers its commands with `tinyq.cli.command` and is listed in
`tinyq.cli.COMMAND_MODULES`. Commands sit on top of everything: they import the
experiments and the library; nothing imports them.
"""
