"""Every `kraft` command group is made here, so their help looks one way."""

import typer


def command_group(help: str, **kw) -> typer.Typer:
    """Click's plain help: each option's text wraps at the terminal's width in one column
    beside the option names. Rich's boxed help squeezed it into 20 columns at 80 and cut long
    option names."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, **kw)
