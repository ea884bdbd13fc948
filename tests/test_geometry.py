"""nirbridge.geometry: every spelling of a geometry value gives the same int tuple, and the
output-shape arithmetic equals torch's and NIR's."""

import itertools

import nir
import numpy as np
import pytest
import torch
from nir.ir.utils import calculate_conv_output

from nirbridge.errors import InvalidParameterError
from nirbridge.geometry import (
    ConvGeometry,
    PoolGeometry,
    as_int,
    as_ints,
    as_padding,
    conv_geometry,
    conv_geometry_of,
    conv_output_shape,
    padding_mode,
    pool_geometry,
    pool_geometry_of,
    symmetric_padding,
)


@pytest.mark.parametrize("value", [2, np.int64(2), np.array(2), np.array([2]), (2,), [2],
                                   np.array([2.0]), torch.tensor([2])])
def test_one_value_is_used_on_every_axis(value):
    assert as_ints(value, 2) == (2, 2)
    assert as_ints(value, 1) == (2,)
    assert all(type(v) is int for v in as_ints(value, 2))


@pytest.mark.parametrize("value", [(2, 3), [2, 3], np.array([2, 3]), np.array([2.0, 3.0]),
                                   np.array([[2, 3]])])
def test_one_value_per_axis_is_kept(value):
    assert as_ints(value, 2) == (2, 3)


@pytest.mark.parametrize("value", ["2", b"2", 2.5, (1, 2, 3), (), np.array([np.nan]), None])
def test_malformed_values_raise(value):
    with pytest.raises(InvalidParameterError, match="stride"):
        as_ints(value, 2, "stride")


def test_as_int():
    assert as_int(np.array([3]), "groups") == 3
    assert as_int(np.int32(3)) == 3
    with pytest.raises(InvalidParameterError, match="groups"):
        as_int((1, 2), "groups")


@pytest.mark.parametrize("value", ["same", b"same", np.bytes_(b"same"), np.str_("same"),
                                   np.array(b"same"), np.array(["same"])])
def test_padding_strings_in_every_spelling(value):
    assert padding_mode(value) == "same"
    assert as_padding(value, 2) == "same"


def test_padding_mode_rejects_other_strings_and_ignores_numbers():
    assert padding_mode(1) is None
    assert padding_mode(np.array([1, 1])) is None
    assert as_padding(np.array([1]), 2) == (1, 1)
    with pytest.raises(InvalidParameterError, match="SAME"):
        padding_mode("SAME")


def test_symmetric_padding_resolves_modes_like_torch():
    assert symmetric_padding("valid", (3, 3)) == (0, 0)
    assert symmetric_padding(b"same", (5,)) == (2,)
    assert symmetric_padding("same", (4, 3), (2, 1)) == (3, 1)
    assert symmetric_padding("same", (4,)) is None  # torch pads 1 left, 2 right
    assert symmetric_padding(1, (3, 3)) == (1, 1)
    assert symmetric_padding(np.array([1, 2]), (3, 3)) == (1, 2)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv_output_shape_equals_nir_and_torch():
    shapes = [(9, 8), (5, 7)]
    for n, k, s, p, d in itertools.product(shapes, [1, 2, 3, (3, 2)], [1, 2, (1, 3)],
                                           [0, 1, (2, 0), "same", "valid"], [1, 2, (1, 2)]):
        ours = conv_output_shape(n, k, s, p, d)
        assert ours == tuple(int(v) for v in calculate_conv_output(n, p, d, k, s))
        if p == "same" and as_ints(s, 2) != (1, 1):
            continue  # torch refuses 'same' with strides
        if any(v <= 0 for v in ours):
            continue
        y = torch.nn.functional.conv2d(torch.zeros(1, 1, *n), torch.zeros(1, 1, *as_ints(k, 2)),
                                       stride=as_ints(s, 2), padding=as_padding(p, 2),
                                       dilation=as_ints(d, 2))
        assert tuple(y.shape[2:]) == ours
    assert conv_output_shape(7, 3, 2, 1) == (4,)
    assert conv_output_shape(np.array([6]), np.array([3]), np.array([1]), b"valid") == (4,)


def test_conv_geometry_of_torch_and_nir():
    g = conv_geometry_of(torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2))
    assert g == ConvGeometry((3, 3), (2, 2), (1, 1), (1, 1), 2)
    assert g.explicit_padding() == (1, 1)
    assert g.output_shape((8, 8)) == (4, 4)
    node = nir.Conv1d(input_shape=6, weight=np.zeros((3, 2, 4)), stride=np.array([2]),
                      padding=b"valid", dilation=1, groups=np.array([1]), bias=np.zeros(3))
    g1 = conv_geometry_of(node)
    assert g1 == ConvGeometry((4,), (2,), "valid", (1,), 1)
    assert g1.explicit_padding() == (0,)
    assert conv_geometry(3, rank=2).kernel_size == (3, 3)


def test_pool_geometry():
    assert pool_geometry(2) == PoolGeometry((2, 2), (2, 2), (0, 0))
    node = nir.SumPool2d(kernel_size=np.array([3]), stride=np.array([2, 1]),
                         padding=np.array([1]))
    k, s, p = pool_geometry_of(node)
    assert (k, s, p) == ((3, 3), (2, 1), (1, 1))
    assert pool_geometry_of(node).area == 9
    assert pool_geometry_of(torch.nn.AvgPool2d(3, 2, 1)).output_shape((7, 8)) == (4, 4)
