import re

import mmgraph
from mmgraph import errors, typing


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", mmgraph.__version__)


def test_error_hierarchy():
    assert issubclass(errors.InputError, errors.MMGraphError)
    assert issubclass(errors.InputError, ValueError)
    assert issubclass(errors.DataFormatError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.UnsafePickleError, errors.DataFormatError)


def test_schema_table_is_consistent():
    assert set(typing.EDGE_TYPES) == set(
        typing.REGION_EDGE_TYPES + typing.TOKEN_EDGE_TYPES + typing.CROSS_EDGE_TYPES
    )
    for src, _, dst in typing.EDGE_TYPES:
        assert src in typing.NODE_TYPES and dst in typing.NODE_TYPES
    assert len(set(typing.DEP_LABELS)) == typing.NUM_DEP_LABELS
    assert typing.DEP_LABEL_TO_ID["seq"] == typing.DEP_LABELS.index("seq")
    assert typing.SPATIAL_SELF == typing.NUM_SPATIAL_CLASSES - 1
