"""Packaging beyond what pyproject.toml can say: the top-level ``configs/`` ships inside the package.

``configs/`` stays at the top of the checkout (the project's layout); every built form (wheel,
``pip install .``, a git URL, an sdist) carries it as ``medclip_cli/configs``, where
:func:`medclip_cli.config_folders.builtin_config_dir` finds it. An editable install reads the
checkout's ``configs/`` directly.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["medclip_cli", "medclip_cli.*"]), "medclip_cli.configs"],
    package_dir={"medclip_cli.configs": "configs"},
    package_data={
        "medclip_cli": ["py.typed"],
        "medclip_cli.configs": ["experiments/*.toml", "labels/*.toml", "prompts/*.toml"],
    },
)
