"""Case files (DESIGN §5): the schema (:mod:`fhnpde.schema`), loading and ``--set``
overrides (:mod:`fhnpde.loading`), key paths and the wording of validation errors
(:mod:`fhnpde.keys`) and the error types (:mod:`fhnpde.errors`), under the one name the rest
of the project and its users import them by.

Every key is checked before anything runs. Unknown keys are errors. A problem in a case
file becomes one :class:`CaseError` whose message names the file, the key path and what
is wrong, e.g. ``cases/x.yaml: time.dt: must be > 0, got -0.1``.
"""

from __future__ import annotations

from .errors import (  # noqa: F401 - re-exported
    KEY_CHARS,
    KEY_PART_CHARS,
    MESSAGE_CHARS,
    QUOTE_CHARS,
    SOURCE_CHARS,
    CaseError,
    KeyedError,
    key_part,
    keyed,
    one_line,
    quote,
    split_keyed,
)
from .keys import (  # noqa: F401 - re-exported
    case_error,
    explain_error,
    set_key_path,
    validation_error_to_case_error,
)
from .loading import (  # noqa: F401 - re-exported
    MAX_FILE_BYTES,
    apply_overrides,
    load_case,
    parse_case,
    read_case_data,
    read_text,
    yaml_load,
)
from .schema import (  # noqa: F401 - re-exported
    BACKENDS,
    CABLE_METHODS,
    DX_MAX,
    DX_MIN,
    MAX_COUNT,
    MAX_DIFFUSION_NUMBER,
    POINT_METHODS,
    SHEET_METHODS,
    TINY,
    TRIDIAGONAL_METHODS,
    AdaptiveSpec,
    BoxProfile,
    BoxStimulus,
    Case,
    Count,
    DomainSpec,
    EnsembleSpec,
    ExactReactionSpec,
    FiniteFloat,
    GaussianProfile,
    InitialSpec,
    ModelSpec,
    NeuralReactionSpec,
    NewtonSpec,
    OpenPair,
    OutputSpec,
    Pair,
    PositiveFloat,
    Profile,
    ReactionSpec,
    SolverSpec,
    TimeSpec,
    ValueList,
)

__all__ = ["Case", "CaseError", "load_case", "parse_case", "apply_overrides", "quote"]
