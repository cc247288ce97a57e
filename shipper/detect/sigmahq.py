"""SigmaHQ's linux rules as written: their Sysmon-for-Linux field names mapped to our ECS fields.

SigmaHQ writes linux process, file and network rules against Sysmon for Linux
(`Image`, `CommandLine`, `TargetFilename`, `Initiated`, ...). This pySigma
processing pipeline renames those fields, per category, to the ones our documents
carry, and turns `Initiated: 'true'/'false'` into `network.direction: egress/ingress`.
`load_rules` applies it to every rule, so the live evaluator and the Kibana generator
(which converts the loaded rules) see the same mapped rule. Our own rules already
use ECS names, which the mapping leaves alone. A name with no counterpart (`DestinationHostname`
maps to `destination.domain`, which our network events never carry) is still mapped; `shipper rules
lint` warns about the fields a category never carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sigma.processing.conditions import IncludeFieldCondition, LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.processing.transformations.base import ValueTransformation
from sigma.types import SigmaBool, SigmaString, SigmaType

_PROCESS = {
    "Image": "process.executable",
    "CommandLine": "process.command_line",
    "CurrentDirectory": "process.working_directory",
    "ProcessId": "process.pid",
    "User": "process.user.name",
    "LogonId": "shipper.process.login_uid",  # Sysmon for Linux: the login uid (audit's auid)
    "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line",
    "ParentProcessId": "process.parent.pid",
}
FIELD_MAPPING: dict[str, dict[str, str]] = {
    "process_creation": _PROCESS,
    "file_event": {
        "TargetFilename": "file.path",
        "Image": "process.executable",
        "ProcessId": "process.pid",
        "User": "process.user.name",
    },
    "network_connection": {
        "Image": "process.executable",
        "CommandLine": "process.command_line",
        "ProcessId": "process.pid",
        "User": "process.user.name",
        "Initiated": "network.direction",
        "Protocol": "network.transport",
        "SourceIp": "source.ip",
        "SourcePort": "source.port",
        "DestinationIp": "destination.ip",
        "DestinationPort": "destination.port",
        "DestinationHostname": "destination.domain",
    },
}


@dataclass
class InitiatedAsDirection(ValueTransformation):
    """Sysmon's `Initiated` (did this host open the connection) as ECS `network.direction`."""

    def apply_value(self, field: str | None, val: SigmaType) -> SigmaType | None:
        if isinstance(val, SigmaBool):
            initiated = val.boolean
        elif isinstance(val, SigmaString) and str(val).lower() in ("true", "false"):
            initiated = str(val).lower() == "true"
        else:
            return None
        return SigmaString("egress" if initiated else "ingress")


def _optional_keys(mapping: Mapping[str, str | list[str]]) -> dict[str | None, str | list[str]]:
    return dict(mapping.items())  # pySigma types its field names as optional


def sigmahq_pipeline() -> ProcessingPipeline:
    items = [ProcessingItem(InitiatedAsDirection(), identifier="sigmahq_initiated_direction",
                            rule_conditions=[LogsourceCondition(category="network_connection")],
                            field_name_conditions=[IncludeFieldCondition(["Initiated"])])]
    items += [ProcessingItem(FieldMappingTransformation(_optional_keys(mapping)), identifier=f"sigmahq_{category}_fields",
                             rule_conditions=[LogsourceCondition(category=category)])
              for category, mapping in FIELD_MAPPING.items()]
    return ProcessingPipeline(name="SigmaHQ linux fields to shipper ECS fields", priority=10, items=items)
