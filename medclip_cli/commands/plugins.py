"""``medclip plugins``: installed plugins, their hooks, and load failures."""

from __future__ import annotations

from medclip_cli import options, ui


def plugins(as_json: options.Json = False) -> None:
    """List installed plugins, the hooks they implement, and any that failed to load.

    Examples:

        medclip plugins --json
    """
    from medclip_cli.plugins import list_plugins, plugin_failures

    loaded = list_plugins()
    failed = plugin_failures()
    if as_json:
        ui.print_json(
            {
                "plugins": [
                    {"name": p.name, "distribution": p.distribution, "hooks": list(p.hooks), "builtin": p.builtin}
                    for p in loaded
                ],
                "failures": [{"name": f.name, "distribution": f.distribution, "error": f.error} for f in failed],
            }
        )
        return
    ui.show(
        ui.table(
            "Plugins",
            ["name", "distribution", "hooks"],
            [(p.name, p.distribution, ", ".join(p.hooks)) for p in loaded],
        )
    )
    if failed:
        ui.show(ui.table("Failed to load", ["name", "distribution", "error"], [(f.name, f.distribution, f.error) for f in failed]))
