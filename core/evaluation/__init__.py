"""The evaluation engine: flags compiled once per version into closures, evaluated without I/O.

See docs/evaluation.md for the order of evaluation, the operators and the bucketing scheme.
"""

from core.evaluation.bucketing import bucket_of, hash_of
from core.evaluation.compile import MAX_PREREQUISITE_DEPTH, CompiledFlag, compile_flag
from core.evaluation.environment import CompiledEnvironment, compile_environment
from core.evaluation.evaluate import evaluate
from core.evaluation.result import ErrorCode, EvaluationResult, Reason
from core.evaluation.semver import parse_semver
from core.evaluation.temporal import NOW_ATTRIBUTE

__all__ = [
    "MAX_PREREQUISITE_DEPTH",
    "NOW_ATTRIBUTE",
    "CompiledEnvironment",
    "CompiledFlag",
    "ErrorCode",
    "EvaluationResult",
    "Reason",
    "bucket_of",
    "compile_environment",
    "compile_flag",
    "evaluate",
    "hash_of",
    "parse_semver",
]
