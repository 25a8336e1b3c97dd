"""The one typed Settings object: built at the edge (CLI, app factory) and passed in.

Values come from ``SIMYARD_*`` environment variables, then ``simyard.toml`` in the
current folder, then the defaults here. Nothing else in simyard reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from simyard.engine.task import EngineOptions
from simyard.manifest.units import Size


class Settings(BaseSettings):
    """Configuration of one simyard installation (see SPEC.md, "Configuration")."""

    model_config = SettingsConfigDict(
        env_prefix="SIMYARD_", toml_file="simyard.toml", extra="ignore", frozen=True
    )

    home: Path = Path(".simyard")
    max_parallel: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    max_log_size: Size = 16 * 2**20
    kill_grace: float = Field(default=5.0, ge=0)
    max_processes: int = Field(default=1024, ge=1)
    max_input_size: Size = 2**30

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def engine_options(self) -> EngineOptions:
        """The engine's share of the settings."""
        return EngineOptions(
            sandbox=self.sandbox,
            max_log_bytes=self.max_log_size,
            kill_grace=self.kill_grace,
            max_processes=self.max_processes,
        )
