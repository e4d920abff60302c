"""Helpers of the management API tests."""

from __future__ import annotations

from typing import Any

from core.commands import CreateFlag, SetEnvironmentConfig
from core.model import EnvironmentConfig, Flag
from events.commands.service import CommandMeta, CommandOutcome
from tests.integration.platform import Platform

__all__ = ["create_flag", "save_config"]


async def create_flag(platform: Platform, flag: dict[str, Any]) -> int:
    """Create a flag through the command path (what POST /api/v1/flags does); its version."""
    parsed = Flag.model_validate(flag)
    command = CreateFlag(flag_key=parsed.key, flag=parsed, expected_version=0)
    outcome: CommandOutcome = await platform.container.execute(command, CommandMeta(actor="test-setup"))
    return int(outcome.version)


async def save_config(platform: Platform, flag: str, environment: str, config: dict[str, Any]) -> int:
    """Set an environment's configuration through the command path and wait until it is projected."""
    command = SetEnvironmentConfig(
        flag_key=flag, environment=environment, config=EnvironmentConfig.model_validate(config)
    )
    outcome: CommandOutcome = await platform.container.execute(command, CommandMeta(actor="test-setup"))
    assert await platform.container.wait_projected(flag, outcome.version, environment)
    return int(outcome.version)
